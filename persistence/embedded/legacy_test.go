package embedded

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"roomengine/actors"
)

func TestImportUsersKeepsIDsAndMovesTheCounter(t *testing.T) {
	ctx := context.Background()
	s, err := Open(filepath.Join(t.TempDir(), "db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old := []actors.User{{ID: "7", Name: "alice"}, {ID: "42", Name: "bob"}}
	if err := s.ImportUsers(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.ImportUsers(ctx, old); err != nil { // running the import again is fine
		t.Fatalf("second import: %v", err)
	}
	if u, err := s.GetUser(ctx, "42"); err != nil || u.Name != "bob" {
		t.Fatalf("imported user: %+v %v", u, err)
	}
	if u, _ := s.CreateUser(ctx, "new"); u.ID != "43" {
		t.Fatalf("first new id after import = %s, want 43", u.ID)
	}
	if err := s.ReserveUserIDs(ctx, 100); err != nil {
		t.Fatal(err)
	}
	if err := s.ReserveUserIDs(ctx, 50); err != nil { // never lowers the counter
		t.Fatal(err)
	}
	if u, _ := s.CreateUser(ctx, "later"); u.ID != "101" {
		t.Fatalf("id after reserving up to 100 = %s, want 101", u.ID)
	}
	// A conflicting id aborts the whole batch.
	err = s.ImportUsers(ctx, []actors.User{{ID: "200", Name: "carol"}, {ID: "7", Name: "mallory"}})
	if !errors.Is(err, ErrUserConflict) {
		t.Fatalf("conflicting import: %v", err)
	}
	if _, err := s.GetUser(ctx, "200"); !errors.Is(err, actors.ErrNotFound) {
		t.Fatal("a refused import wrote part of its batch")
	}
}
