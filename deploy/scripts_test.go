package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// maintainerRun runs one of deploy/debian's maintainer scripts with the system commands it
// calls replaced by stubs that record their arguments, and returns those calls. exists lists
// what getent and dpkg-statoverride --list find (the user, overridden paths).
func maintainerRun(t *testing.T, script string, exists []string, args ...string) []string {
	t.Helper()
	bin := t.TempDir()
	log := filepath.Join(t.TempDir(), "calls")
	stub := `#!/bin/sh
echo "$(basename "$0") $*" >>"$CALLS"
case "$(basename "$0") $*" in
  "getent passwd "*|"dpkg-statoverride --list "*)
    for x in $EXISTS; do [ "$x" = "$(eval echo \${$#})" ] && exit 0; done
    exit 2 ;;
esac
exit 0
`
	for _, name := range []string{"getent", "adduser", "dpkg-statoverride", "systemctl", "deb-systemd-invoke", "deb-systemd-helper", "useradd", "userdel", "deluser"} {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte(stub), 0o755))
	}
	cmd := exec.Command("/bin/sh", append([]string{filepath.Join("debian", script)}, args...)...)
	cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "CALLS=" + log, "EXISTS=" + strings.Join(exists, " ")}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %v: %s", script, args, out)
	calls, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	return strings.Split(strings.TrimSpace(string(calls)), "\n")
}

// What the package's scripts do on a machine: a fresh install creates the roomengine system
// user and locks app.yaml to its group, and starts nothing; an upgrade keeps the operator's
// permission overrides and restarts only a running service; removal stops it.
func TestMaintainerScripts(t *testing.T) {
	systemd := false
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		systemd = true // the scripts talk to systemd only when it runs
	}
	noStart := func(t *testing.T, calls []string) {
		for _, c := range calls {
			for _, bad := range []string{"enable", " start", "restart roomengine", "--now"} {
				if strings.Contains(c, bad) && !strings.Contains(c, "try-restart") {
					t.Errorf("starts or enables the service by itself: %q", c)
				}
			}
		}
	}

	t.Run("fresh install", func(t *testing.T) {
		calls := maintainerRun(t, "postinst", nil, "configure", "")
		noStart(t, calls)
		joined := strings.Join(calls, "\n")
		assert.Regexp(t, `(?m)^adduser --system --group .*--home /var/lib/roomengine .*roomengine$`, joined,
			"the roomengine system user and group")
		assert.Contains(t, calls, "dpkg-statoverride --update --add root roomengine 0640 /etc/roomengine/app.yaml",
			"app.yaml readable by the service's group only")
		assert.Contains(t, calls, "dpkg-statoverride --update --add root roomengine 0750 /etc/roomengine")
		assert.NotContains(t, joined, "try-restart", "nothing was running before")
		assert.Equal(t, systemd, strings.Contains(joined, "daemon-reload"), "systemd learns about the unit when it runs")
	})

	t.Run("upgrade", func(t *testing.T) {
		calls := maintainerRun(t, "postinst", []string{"roomengine", "/etc/roomengine/app.yaml", "/etc/roomengine"},
			"configure", "0.9.0")
		noStart(t, calls)
		joined := strings.Join(calls, "\n")
		assert.NotContains(t, joined, "adduser", "the user exists")
		assert.NotContains(t, joined, "--add", "the operator's overrides stay")
		assert.Equal(t, systemd, strings.Contains(joined, "deb-systemd-invoke try-restart roomengine.service"),
			"a running node restarts on the new binary (a stopped one stays stopped)")
	})

	t.Run("remove", func(t *testing.T) {
		calls := maintainerRun(t, "prerm", nil, "remove")
		noStart(t, calls)
		assert.Equal(t, systemd, strings.Contains(strings.Join(calls, "\n"), "deb-systemd-invoke stop roomengine.service"))
	})

	t.Run("purge", func(t *testing.T) {
		calls := maintainerRun(t, "postrm", []string{"/etc/roomengine/app.yaml", "/etc/roomengine"}, "purge")
		joined := strings.Join(calls, "\n")
		assert.Contains(t, joined, "dpkg-statoverride --remove /etc/roomengine/app.yaml")
		assert.Contains(t, joined, "dpkg-statoverride --remove /etc/roomengine")
		for _, c := range calls {
			assert.NotRegexp(t, `^(deluser|userdel)`, c, "the user (and its data) stay after purge")
		}
	})
}
