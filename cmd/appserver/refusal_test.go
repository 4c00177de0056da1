package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An insecure configuration does not start: the process exits non-zero with one line that
// names the variable to set, and serves nothing.
func TestInsecureConfigurationsDoNotStart(t *testing.T) {
	bin := binary(t)
	long := "0123456789abcdef0123456789abcdef"
	for name, tc := range map[string]struct {
		env  []string
		want string
	}{
		"cluster on a network address without a secret": {
			[]string{"APPSERVER_STORE=redis", "APPSERVER_CLUSTER_ENABLED=true", "APPSERVER_CLUSTER_BINDADDR=10.0.0.5:7946"},
			"config: cluster.secret: must be set when cluster.bindAddr (\"10.0.0.5:7946\") is not a loopback address"},
		"short cluster secret": {
			[]string{"APPSERVER_STORE=redis", "APPSERVER_CLUSTER_ENABLED=true", "APPSERVER_CLUSTER_SECRET=short"},
			"config: APPSERVER_CLUSTER_SECRET: too short (5 bytes): set APPSERVER_CLUSTER_SECRET to at least 32"},
		"short auth secret": {
			[]string{"APPSERVER_AUTH_REQUIRED=true", "APPSERVER_AUTH_SECRET=x"},
			"config: APPSERVER_AUTH_SECRET: too short (1 bytes): set APPSERVER_AUTH_SECRET to at least 32"},
		"short admin token": {
			[]string{"APPSERVER_ADMIN_TOKEN=admin"},
			"config: APPSERVER_ADMIN_TOKEN: too short (5 bytes): set APPSERVER_ADMIN_TOKEN to at least 32"},
		"auth required, Aliyun mix, no callback key": {
			[]string{"APPSERVER_AUTH_REQUIRED=true", "APPSERVER_AUTH_SECRET=" + long, "APPSERVER_MIX=aliyun-live",
				"APPSERVER_ALI_ACCESSKEYID=id", "APPSERVER_ALI_ACCESSKEYSECRET=s"},
			"config: ali.callbackAuthKey: must be set when auth.required is true with mix aliyun-live, else anyone can send the stream callbacks: set APPSERVER_ALI_CALLBACKAUTHKEY"},
	} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin)
			cmd.Env = append(os.Environ(), append([]string{"APPSERVER_PORT=1", "APPSERVER_DATADIR=" + t.TempDir()}, tc.env...)...)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "the process started: %v\n%s", err, out)
			assert.NotEqual(t, 0, exit.ExitCode())
			assert.Contains(t, string(out), tc.want)
			for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if strings.Contains(l, "config:") {
					assert.NotContains(t, l, long, "the error quotes a secret")
				}
			}
		})
	}
}
