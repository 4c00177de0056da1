package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"roomengine/actors"
	"roomengine/config"
	redisstore "roomengine/persistence/redis"
)

// userImporter is what a store needs for import-legacy beyond actors.Store: writing users
// under their own ids, and moving the id counter past them. persistence/redis has both.
type userImporter interface {
	ImportUsers(ctx context.Context, users []actors.User) error
	ReserveUserIDs(ctx context.Context, last uint64) error
}

// legacyCheckWorkers bounds the concurrent GetUser calls of the conflict check.
const legacyCheckWorkers = 16

const legacyUsage = `usage: appserver import-legacy [-config FILE] [-from HOST:PORT] [-from-password P]
       [-from-db N] [-from-prefix mns] [-expire-publishing] [-dry-run]

Copies the old Node server's users (with their ids) and live host rooms from its Redis into
the configured store, and moves the user id counter past every id the old server handed out.
Run it before starting this server on that store (running servers load rooms at start-up).

`

// runImportLegacy is the import-legacy subcommand; it returns the exit status.
func runImportLegacy(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("appserver import-legacy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, legacyUsage)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", lookupEnv(environ, config.EnvConfigFile), "YAML configuration file (optional)")
	from := fs.String("from", "", "the old server's Redis `host:port` (default: the configured redis.host:redis.port)")
	fromPassword := fs.String("from-password", "", "its password (default: the configured redis.password)")
	fromDB := fs.Int("from-db", 0, "its database number (default: the configured redis.db)")
	fromPrefix := fs.String("from-prefix", redisstore.DefaultLegacyPrefix, "the old server's redis.keyprefix")
	expirePublishing := fs.Bool("expire-publishing", false,
		"give rooms the old server saw publishing a no-publish deadline too (for stale data: they end unless they publish again)")
	dryRun := fs.Bool("dry-run", false, "read and check everything, print what would be imported, write nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "appserver import-legacy: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := config.Load(*configPath, environ)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	src := redisstore.LegacySource{
		Addr:     net.JoinHostPort(cfg.Redis.Host, strconv.Itoa(cfg.Redis.Port)),
		Password: cfg.Redis.Password,
		DB:       cfg.Redis.DB,
		Prefix:   *fromPrefix,
		Timeout:  max(cfg.Redis.Timeout, 5*time.Second),
	}
	if set["from"] {
		src.Addr = *from
	}
	if set["from-password"] {
		src.Password = *fromPassword
	}
	if set["from-db"] {
		src.DB = *fromDB
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	imp := &legacyImport{cfg: cfg, src: src, dryRun: *dryRun, expirePublishing: *expirePublishing,
		log: newLogger(cfg, stderr), out: stdout}
	if err := imp.run(ctx); err != nil {
		fmt.Fprintln(stderr, "appserver import-legacy:", err)
		return 1
	}
	return 0
}

func lookupEnv(environ []string, name string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

type legacyImport struct {
	cfg              *config.Config
	src              redisstore.LegacySource
	dryRun           bool
	expirePublishing bool
	log              *slog.Logger
	out              io.Writer
}

// legacyPlan is what the import will write.
type legacyPlan struct {
	newUsers   []actors.User
	knownUsers int // already in the store under the same id and name
	lastID     uint64
	rooms      []actors.Room
	publishing int
	skipped    int       // rooms
	deadline   time.Time // the no-publish deadline of the rooms not publishing
}

func (l *legacyImport) run(ctx context.Context) error {
	data, err := redisstore.ReadLegacy(ctx, l.src)
	if err != nil {
		return err
	}
	for _, s := range data.Skipped {
		l.log.Warn("legacy record skipped: cannot be decoded", "record", s)
	}
	fmt.Fprintf(l.out, "read %s (prefix %q, db %d): %d users, last id %d, %d rooms, %d co-streaming records, %d undecodable records\n",
		l.src.Addr, l.src.Prefix, l.src.DB, len(data.Users), data.LastID, len(data.Rooms), data.Calls, len(data.Skipped))

	store, _, err := openStore(ctx, l.cfg, l.log, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	importer, ok := store.(userImporter)
	if !ok && !l.dryRun {
		// Both stores can; this guards a store added later without that ability.
		return fmt.Errorf("store %s cannot import users with their ids (nothing was written)", l.cfg.Store)
	}

	plan, err := l.plan(ctx, store, data)
	if err != nil {
		return err
	}
	if data.Calls > 0 {
		// A call is the old server's in-process state machine plus a CDN mix it started; this
		// server cannot take over either half, so the hosts simply invite again.
		l.log.Info("legacy co-streaming records not imported: calls cannot resume across servers", "count", data.Calls)
	}
	if l.dryRun {
		fmt.Fprintln(l.out, "dry run: nothing written")
		if !ok {
			fmt.Fprintf(l.out, "note: store %s cannot import users with their ids yet; a real run needs store: redis\n", l.cfg.Store)
		}
	} else {
		if err := importer.ImportUsers(ctx, plan.newUsers); err != nil {
			return fmt.Errorf("%w (users already written stay; fix the cause and run the import again)", err)
		}
		if err := importer.ReserveUserIDs(ctx, plan.lastID); err != nil {
			return err
		}
		for _, r := range plan.rooms {
			if err := store.SaveRoom(ctx, r); err != nil {
				return fmt.Errorf("%w (what was written stays; run the import again to finish)", err)
			}
		}
	}
	verb := "imported"
	if l.dryRun {
		verb = "to import"
	}
	fmt.Fprintf(l.out, "users: %d %s, %d already present; new ids start after %d\n",
		len(plan.newUsers), verb, plan.knownUsers, plan.lastID)
	fmt.Fprintf(l.out, "rooms: %d %s (%d publishing, %d end at %s unless they publish), %d skipped\n",
		len(plan.rooms), verb, plan.publishing, len(plan.rooms)-plan.publishing,
		plan.deadline.Format(time.DateTime), plan.skipped)
	fmt.Fprintf(l.out, "co-streaming records: %d not imported (calls cannot resume across servers)\n", data.Calls)
	return nil
}

// plan checks the legacy data against the store and builds what to write. A user id the
// store already gives to someone else stops the import before anything is written.
func (l *legacyImport) plan(ctx context.Context, store actors.Store, data *redisstore.LegacyData) (*legacyPlan, error) {
	p := &legacyPlan{lastID: data.LastID}
	legacyUsers := make(map[string]actors.User, len(data.Users))
	for _, u := range data.Users {
		legacyUsers[u.ID] = u
		id, _ := strconv.ParseUint(u.ID, 10, 64)
		p.lastID = max(p.lastID, id)
	}

	have, err := lookupUsers(ctx, store, data.Users)
	if err != nil {
		return nil, err
	}
	var conflicts []string
	for i, u := range data.Users {
		switch h := have[i]; {
		case h == nil:
			p.newUsers = append(p.newUsers, u)
		case h.Name == u.Name:
			p.knownUsers++
		default:
			conflicts = append(conflicts, fmt.Sprintf("id %s is %q here and %q in the old data", u.ID, h.Name, u.Name))
		}
	}
	if len(conflicts) > 0 {
		return nil, fmt.Errorf("%d user ids already belong to other users in the store (%s); import into an "+
			"empty store or another redis.keyprefix (nothing was written)", len(conflicts), conflicts[0])
	}

	existing, err := store.LoadRooms(ctx)
	if err != nil {
		return nil, fmt.Errorf("load rooms: %w", err)
	}
	stored := make(map[string]bool, len(existing))
	for _, r := range existing {
		stored[r.ID] = true
	}
	now := time.Now()
	p.deadline = now.Add(l.cfg.Live.NoPublishTimeout)
	urls := newURLs(l.cfg)
	for _, lr := range data.Rooms {
		room, reason := l.convertRoom(ctx, store, lr, legacyUsers, stored, urls, now)
		if reason != "" {
			p.skipped++
			l.log.Info("legacy room skipped", "room", lr.RoomID, "why", reason)
			continue
		}
		if room.Publishing {
			p.publishing++
		}
		p.rooms = append(p.rooms, room)
	}
	return p, nil
}

// convertRoom makes a room snapshot from a legacy record, or says why the record is skipped.
func (l *legacyImport) convertRoom(ctx context.Context, store actors.Store, lr redisstore.LegacyRoom,
	users map[string]actors.User, stored map[string]bool, urls actors.URLs, now time.Time) (actors.Room, string) {
	switch {
	case lr.Type != actors.TypeHost:
		return actors.Room{}, fmt.Sprintf("type %d is not a host room (co-stream rooms belong to calls, which are not imported)", lr.Type)
	case lr.Status != actors.StatusCreated && lr.Status != actors.StatusPublishing:
		return actors.Room{}, fmt.Sprintf("status %d: ended", lr.Status)
	case stored[lr.RoomID]:
		return actors.Room{}, "already in the store"
	case !validRoomID(lr.RoomID):
		return actors.Room{}, "room id is not 10 lowercase hex characters"
	}
	host, ok := users[lr.UID]
	if !ok {
		u, err := store.GetUser(ctx, lr.UID)
		if err != nil {
			return actors.Room{}, fmt.Sprintf("host %q is not a known user", lr.UID)
		}
		host = u
	}
	created, err := time.ParseInLocation(time.DateTime, lr.CreateTime, time.Local)
	if err != nil {
		l.log.Warn("legacy room has no readable createTime; using now", "room", lr.RoomID, "createTime", lr.CreateTime)
		created = now
	}
	name := lr.Name
	if name == "" {
		name = host.Name
	}
	desc := lr.Description
	if desc == "" {
		desc = name + "的直播"
	}
	pushURL := lr.RtmpURL // what the host's encoder already uses
	if pushURL == "" {
		pushURL = urls.PushURL(lr.RoomID, now)
	}
	room := actors.Room{
		ID: lr.RoomID, UID: host.ID, Name: name, Description: desc, CreateTime: created,
		Status: actors.StatusCreated, Type: actors.TypeHost,
		// Mix availability is the CDN's fact about the stream; a mix itself belonged to a
		// call, and calls are not imported.
		IsMixReady: lr.IsMixReady,
		PushURL:    pushURL,
	}
	if lr.Status == actors.StatusPublishing && !l.expirePublishing {
		// Its stream is live: Aliyun will not notify "publish" again, so a deadline would
		// end a running broadcast. Its publish_done re-arms the deadline as usual.
		room.Status, room.Publishing = actors.StatusPublishing, true
	} else {
		room.NoPublishDeadline = now.Add(l.cfg.Live.NoPublishTimeout)
	}
	return room, ""
}

func validRoomID(id string) bool {
	if len(id) != 10 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// lookupUsers returns, for each user, the store's user under that id (nil when none),
// asking legacyCheckWorkers at a time.
func lookupUsers(ctx context.Context, store actors.Store, users []actors.User) ([]*actors.User, error) {
	out := make([]*actors.User, len(users))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next := make(chan int)
	for range legacyCheckWorkers {
		wg.Go(func() {
			for i := range next {
				u, err := store.GetUser(ctx, users[i].ID)
				switch {
				case errors.Is(err, actors.ErrNotFound):
				case err != nil:
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("check user %s: %w", users[i].ID, err)
					}
					mu.Unlock()
				default:
					out[i] = &u
				}
			}
		})
	}
	for i := range users {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return out, firstErr
}
