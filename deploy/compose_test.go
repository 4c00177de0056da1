package deploy

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
)

// composeService is the part of a compose service the test checks.
type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	NetworkMode string            `yaml:"network_mode"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
	Restart     string            `yaml:"restart"`
	StopSignal  string            `yaml:"stop_signal"`
	StopGrace   string            `yaml:"stop_grace_period"`
	ReadOnly    bool              `yaml:"read_only"`
	DependsOn   map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// TestCompose checks deploy/compose.yaml against what the rest of the repository says: the
// nodes' variables are configuration keys the server accepts, their ports are the upstream
// of docs/nginx-cluster.conf, their health check is the image's binary asking /readyz (the
// chart's readiness probe), and the graceful stop gets the time the systemd unit and the
// chart give it.
func TestCompose(t *testing.T) {
	raw, err := os.ReadFile("compose.yaml")
	require.NoError(t, err)
	var file struct {
		Services map[string]composeService `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &file))

	var nodes []string
	for name, s := range file.Services {
		if strings.HasPrefix(s.Image, "roomengine:") {
			nodes = append(nodes, name)
		}
	}
	slices.Sort(nodes)
	require.Equal(t, []string{"n1", "n2", "n3"}, nodes, "three nodes on the roomengine image")

	upstream := nginxUpstream(t)
	values := chartValues(t)
	unitStop := unitService(fileText(t, "roomengine.service"))["TimeoutStopSec"]
	entrypoint := containerfileEntrypoint(t)

	var ports []string
	for _, name := range nodes {
		s := file.Services[name]
		t.Run(name, func(t *testing.T) {
			checkServerEnv(t, s.Environment, "compose "+name)
			assert.Equal(t, "redis", s.Environment["APPSERVER_STORE"])
			assert.Equal(t, "true", s.Environment["APPSERVER_CLUSTER_ENABLED"])
			assert.Equal(t, name, s.Environment["APPSERVER_CLUSTER_NODE"])
			assert.Equal(t, "service:redis", s.NetworkMode, "one network namespace: loopback addresses as in make cluster")
			ports = append(ports, s.Environment["APPSERVER_PORT"])

			require.NotNil(t, s.Healthcheck)
			assert.Equal(t, []string{"CMD", entrypoint, "healthcheck"}, s.Healthcheck.Test,
				"the image's binary checks /readyz (the chart's readiness probe: %s)", "/readyz")
			assert.Equal(t, "on-failure", s.Restart, "a node the cluster declared dead exits 1 and must restart")
			assert.Equal(t, "SIGTERM", s.StopSignal)
			grace, err := time.ParseDuration(s.StopGrace)
			require.NoError(t, err, "stop_grace_period %q", s.StopGrace)
			assert.Equal(t, unitStop, s.StopGrace, "the same stop time as deploy/roomengine.service")
			assert.Equal(t, values.TerminationGracePeriodSeconds, int(grace.Seconds()), "the same stop time as the chart")
			assert.Equal(t, "service_healthy", s.DependsOn["redis"].Condition, "nodes start once Redis answers")
			assert.True(t, s.ReadOnly, "read-only root filesystem, as in the chart")
		})
	}
	assert.ElementsMatch(t, upstream, ports, "the nodes listen where docs/nginx-cluster.conf sends requests")

	redis := file.Services["redis"]
	cmd := strings.Join(redis.Command, " ")
	assert.Contains(t, cmd, "--appendonly yes", "docs/cluster.md: appendonly")
	assert.Contains(t, cmd, "--appendfsync always", "docs/cluster.md: appendfsync always")
	require.NotNil(t, redis.Healthcheck)
	assert.Contains(t, redis.Ports, nginxListen(t)+":"+nginxListen(t), "nginx's port is published")

	nginx := file.Services["nginx"]
	assert.Equal(t, "service:redis", nginx.NetworkMode)
	assert.Contains(t, nginx.Volumes, "../docs/nginx-cluster.conf:/etc/nginx/conf.d/default.conf:ro",
		"nginx runs the documented sample as it is")
	for _, n := range nodes {
		assert.Equal(t, "service_healthy", nginx.DependsOn[n].Condition)
	}
}

// nginxUpstream lists the ports of docs/nginx-cluster.conf's upstream servers.
func nginxUpstream(t *testing.T) []string {
	t.Helper()
	var ports []string
	for _, m := range regexp.MustCompile(`(?m)^\s*server 127\.0\.0\.1:(\d+)`).FindAllStringSubmatch(fileText(t, "../docs/nginx-cluster.conf"), -1) {
		ports = append(ports, m[1])
	}
	require.NotEmpty(t, ports)
	return ports
}

// nginxListen is the port docs/nginx-cluster.conf listens on.
func nginxListen(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*listen (\d+);`).FindStringSubmatch(fileText(t, "../docs/nginx-cluster.conf"))
	require.NotNil(t, m)
	return m[1]
}

// chartValues reads the chart's defaults that compose and the image must agree with.
func chartValues(t *testing.T) (v struct {
	TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
	Service                       struct {
		Port int `yaml:"port"`
	} `yaml:"service"`
}) {
	t.Helper()
	require.NoError(t, yaml.Unmarshal([]byte(fileText(t, chartDir+"/values.yaml")), &v))
	return v
}

// containerfileEntrypoint is the binary the image runs (ENTRYPOINT ["/appserver"]).
func containerfileEntrypoint(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"\]`).FindStringSubmatch(fileText(t, "../Containerfile"))
	require.NotNil(t, m)
	return m[1]
}

// The image, the chart and the server agree on the API port.
func TestPortsAgree(t *testing.T) {
	m := regexp.MustCompile(`(?m)^EXPOSE (\d+)`).FindStringSubmatch(fileText(t, "../Containerfile"))
	require.NotNil(t, m)
	assert.Equal(t, "4000", m[1], "the server's default port")
	assert.Equal(t, strconv.Itoa(chartValues(t).Service.Port), m[1], "the chart's Service port")
	d := one[*appsv1.Deployment](t, render(t), "rel-roomengine")
	assert.EqualValues(t, 4000, containerPort(t, d.Spec.Template.Spec.Containers[0], "http").ContainerPort)
}
