package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deployUnit is the systemd unit the README's "Deploying" section installs.
const deployUnit = "../../deploy/roomengine.service"

// deployExecPath is the binary the committed unit starts.
const deployExecPath = "/usr/local/bin/appserver"

// TestDeployUnitVerifies runs `systemd-analyze verify` on deploy/roomengine.service, with
// ExecStart pointed at a freshly built appserver (verify refuses a command that does not
// exist), and fails on any complaint about the unit: systemd ignores a misspelled key or a bad
// value with a warning and verify still exits 0, so its output counts too. A deliberately
// broken copy must fail the same check, so the check itself is known to work.
func TestDeployUnitVerifies(t *testing.T) {
	analyze := deployAnalyzer(t)
	unit, err := os.ReadFile(deployUnit)
	require.NoError(t, err)
	require.Contains(t, string(unit), "ExecStart="+deployExecPath+" ",
		"the unit starts %s (the test rewrites that path to the built binary)", deployExecPath)
	bin := binary(t)

	t.Run("committed", func(t *testing.T) {
		problems := deployVerify(t, analyze, deployInstall(t, string(unit), bin))
		assert.Empty(t, problems, "systemd-analyze verify %s", deployUnit)
	})

	t.Run("broken copy fails", func(t *testing.T) {
		for name, broken := range map[string]string{
			"bad value":   strings.Replace(string(unit), "Restart=on-failure", "Restart=sometimes", 1),
			"unknown key": strings.Replace(string(unit), "KillSignal=", "KilSignal=", 1),
			"no binary": strings.Replace(string(unit), "ExecStart="+deployExecPath,
				"ExecStart="+filepath.Join(t.TempDir(), "missing"), 1),
		} {
			require.NotEqual(t, string(unit), broken, name)
			assert.NotEmpty(t, deployVerify(t, analyze, deployInstall(t, broken, bin)),
				"%s: a broken unit passed systemd-analyze verify", name)
		}
	})
}

// TestDeployUnitSettings checks what the README promises about the unit: a crashed or
// expelled node is restarted, SIGTERM drains, systemd waits for the drain, and there are
// descriptors for many WebSockets.
func TestDeployUnitSettings(t *testing.T) {
	unit, err := os.ReadFile(deployUnit)
	require.NoError(t, err)
	svc := deploySection(string(unit), "Service")

	assert.Equal(t, "on-failure", svc["Restart"], "a cluster node declared dead exits 1 and must be started again")
	assert.Equal(t, "SIGTERM", svc["KillSignal"], "SIGTERM is the graceful drain and cluster leave")
	assert.True(t, strings.HasPrefix(svc["ExecStart"], deployExecPath+" -config "), "ExecStart: %q", svc["ExecStart"])
	assert.NotEmpty(t, svc["User"], "the server does not run as root")
	assert.Equal(t, "yes", svc["NoNewPrivileges"])
	assert.Equal(t, "strict", svc["ProtectSystem"])

	stop, err := time.ParseDuration(svc["TimeoutStopSec"])
	require.NoError(t, err, "TimeoutStopSec=%q", svc["TimeoutStopSec"])
	// The HTTP/WebSocket drain, then up to 5 s of MNS flush and 5 s of cluster leave.
	assert.Greater(t, stop, drainTimeout+10*time.Second, "TimeoutStopSec must outlast the graceful stop")

	// One descriptor per WebSocket client: Debian's default soft limit of 1024 is far too few.
	nofile, err := strconv.Atoi(svc["LimitNOFILE"])
	require.NoError(t, err, "LimitNOFILE=%q", svc["LimitNOFILE"])
	assert.GreaterOrEqual(t, nofile, 65536, "LimitNOFILE for many WebSockets")
}

// deployAnalyzer finds systemd-analyze, or fails saying how to get it.
func deployAnalyzer(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (%v): install Debian's systemd package "+
			"(`make test-deps` does, through scripts/test-deps.sh)", err)
	}
	return path
}

// deployInstall writes unit into a fresh directory as roomengine.service with ExecStart's
// binary replaced by bin, and returns its path.
func deployInstall(t *testing.T, unit, bin string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "roomengine.service")
	unit = strings.ReplaceAll(unit, "ExecStart="+deployExecPath+" ", "ExecStart="+bin+" ")
	require.NoError(t, os.WriteFile(path, []byte(unit), 0o644))
	return path
}

// deployVerify runs systemd-analyze verify on the unit at path and returns its complaints
// about that unit: the lines naming it, or everything it printed when it failed.
func deployVerify(t *testing.T, analyze, path string) []string {
	t.Helper()
	cmd := exec.Command(analyze, "verify", "--man=no", path)
	cmd.Dir = filepath.Dir(path)
	out, err := cmd.CombinedOutput()
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, filepath.Base(path)) {
			problems = append(problems, line)
		}
	}
	if err != nil && len(problems) == 0 {
		problems = append(problems, err.Error()+": "+string(out))
	}
	return problems
}

// deploySection returns the Key=Value settings of one [section] of a unit file (the last
// value of a repeated key; comments and blank lines skipped).
func deploySection(unit, section string) map[string]string {
	settings := map[string]string{}
	in := false
	sc := bufio.NewScanner(strings.NewReader(unit))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			in = line == "["+section+"]"
		case in:
			if k, v, ok := strings.Cut(line, "="); ok {
				settings[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	return settings
}
