package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// podman runs podman on a storage of its own under dir: the test neither sees nor leaves
// images in the machine's store, and vfs + cgroupfs work in unprivileged CI containers.
func podman(dir string) []string {
	return []string{"podman", "--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"}
}

// TestImage builds the image with scripts/image.sh (what `make image` runs) and checks it as
// a container runtime would see it, then takes the binary out of it and runs `version`
// (these machines cannot run a container: crun's setrlimit is refused).
func TestImage(t *testing.T) {
	t.Parallel()
	store := t.TempDir()
	pm := podman(store)
	cmd := exec.Command("../scripts/image.sh")
	cmd.Env = append(os.Environ(), "PODMAN="+strings.Join(pm, " "), "IMAGE=roomengine-test",
		"DIST="+filepath.Join(t.TempDir(), "dist"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "scripts/image.sh:\n%s", stderr.String())
	version := builtVersion(t)
	tag := strings.NewReplacer("~", "-", "+", "-").Replace(version)
	assert.Equal(t, "roomengine-test:"+tag, strings.TrimSpace(string(out)))

	run := func(args ...string) []byte {
		t.Helper()
		c := exec.Command(pm[0], append(pm[1:], args...)...)
		out, err := c.Output()
		var stderr []byte
		if e, ok := err.(*exec.ExitError); ok {
			stderr = e.Stderr
		}
		require.NoError(t, err, "podman %s: %s", strings.Join(args, " "), stderr)
		return out
	}
	var images []struct {
		Architecture string
		Config       struct {
			User         string
			Entrypoint   []string
			Env          []string
			ExposedPorts map[string]struct{}
			Volumes      map[string]struct{}
			Labels       map[string]string
		}
	}
	require.NoError(t, json.Unmarshal(run("image", "inspect", "roomengine-test:"+tag), &images))
	require.Len(t, images, 1)
	img := images[0]
	latest := []struct{ ID string }{}
	require.NoError(t, json.Unmarshal(run("image", "inspect", "roomengine-test:latest"), &latest))
	require.Len(t, latest, 1, "tagged latest too")

	c := img.Config
	user, group, _ := strings.Cut(c.User, ":")
	assert.Equal(t, "65532", user, "a numeric non-root user (runAsNonRoot can check it)")
	assert.Equal(t, "65532", group)
	assert.Equal(t, []string{"/appserver"}, c.Entrypoint)
	assert.Contains(t, c.ExposedPorts, "4000/tcp")
	assert.Contains(t, c.Volumes, "/data")
	assert.Contains(t, c.Env, "APPSERVER_DATADIR=/data", "the embedded store on the volume")
	assert.Equal(t, version, c.Labels["org.opencontainers.image.version"])
	assert.Equal(t, "Apache-2.0", c.Labels["org.opencontainers.image.licenses"])
	assert.NotEmpty(t, c.Labels["org.opencontainers.image.source"])
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	require.NoError(t, err)
	assert.Equal(t, strings.TrimSpace(string(head)), c.Labels["org.opencontainers.image.revision"])

	// The image's files, through a created (never started) container.
	id := strings.TrimSpace(string(run("create", "roomengine-test:"+tag)))
	files := untarStream(t, run("export", id))
	run("rm", id)
	bin, ok := files["appserver"]
	require.True(t, ok, "/appserver in the image")
	assert.EqualValues(t, 0o755, bin.mode&0o777)
	checkBinary(t, bin.data, "linux", img.Architecture, version)
	data, ok := files["data"]
	require.True(t, ok, "/data in the image")
	assert.Equal(t, 65532, data.uid, "/data belongs to the runtime user: the store can write there")
	assert.Contains(t, files, "etc/ssl/certs/ca-certificates.crt", "CA roots for the Aliyun APIs")
}
