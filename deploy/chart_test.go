package deploy

import (
	"os/exec"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"

	"roomengine/config"
)

// The graceful stop the pod's grace period must cover after preStop: the HTTP/WebSocket
// drain (15 s), the MNS flush (5 s) and the cluster hand-over (5 s) — the same budget
// deploy/roomengine.service's TimeoutStopSec covers.
const gracefulStopSeconds = 15 + 5 + 5

// clusterValues is a cluster of three nodes with every secret set.
var clusterValues = []string{"cluster.enabled=true", "replicaCount=3", "redis.host=redis.live.svc",
	"redis.password=redis-pass-0123456789", "cluster.secret=cluster-secret-0123456789abcdef0123456789",
	"admin.token=admin-token-0123456789abcdef0123456789", "serviceMonitor.enabled=true",
	"config.http\\.publicUrl=https://live.example.com"}

func TestHelmLintStrict(t *testing.T) {
	t.Parallel()
	helm := tool(t, "helm")
	for name, set := range map[string][]string{"single node": nil, "cluster": clusterValues} {
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir}
			for _, s := range set {
				args = append(args, "--set", s)
			}
			out, err := exec.Command(helm, args...).CombinedOutput()
			assert.NoError(t, err, "helm %s:\n%s", strings.Join(args, " "), out)
		})
	}
}

// With no values at all: one node on the embedded store, on a PersistentVolumeClaim.
func TestChartSingleNode(t *testing.T) {
	m := render(t)
	d := one[*appsv1.Deployment](t, m, "rel-roomengine")
	checkPod(t, m, d)

	assert.EqualValues(t, 1, *d.Spec.Replicas)
	assert.Equal(t, appsv1.RecreateDeploymentStrategyType, d.Spec.Strategy.Type,
		"the embedded store is one file: the old pod must stop before the new one opens it")
	pvc := one[*corev1.PersistentVolumeClaim](t, m, "rel-roomengine")
	assert.Equal(t, "keep", pvc.Annotations["helm.sh/resource-policy"], "uninstalling keeps the data")
	vol := volume(t, d, "data")
	require.NotNil(t, vol.PersistentVolumeClaim, "the data volume is the claim")
	assert.Equal(t, pvc.Name, vol.PersistentVolumeClaim.ClaimName)
	assert.Equal(t, "/data", mount(t, d, "data").MountPath)

	env := podEnv(t, m, d)
	assert.Equal(t, "embedded", env["APPSERVER_STORE"])
	assert.Equal(t, "/data", env["APPSERVER_DATADIR"], "the store lives on the claim")
	assert.GreaterOrEqual(t, len(env["APPSERVER_AUTH_SECRET"]), 32, "auth.secret is generated when not given")
	assert.NotContains(t, env, "APPSERVER_CLUSTER_ENABLED")

	assert.Zero(t, count[*networkingv1.NetworkPolicy](m), "no peer port to protect")
	assert.Zero(t, count[*monitoringv1.ServiceMonitor](m), "the ServiceMonitor is optional")
	assert.Equal(t, 1, count[*corev1.Service](m), "no peer Service for one node")
}

// cluster.enabled: N nodes on the external Redis, each advertising its pod IP, a headless
// Service for the peer port and every secret from the Secret.
func TestChartCluster(t *testing.T) {
	m := render(t, clusterValues...)
	d := one[*appsv1.Deployment](t, m, "rel-roomengine")
	checkPod(t, m, d)

	assert.EqualValues(t, 3, *d.Spec.Replicas)
	require.Equal(t, appsv1.RollingUpdateDeploymentStrategyType, d.Spec.Strategy.Type)
	assert.Equal(t, "0", d.Spec.Strategy.RollingUpdate.MaxUnavailable.String(), "one node at a time, a new one ready first")
	assert.Zero(t, count[*corev1.PersistentVolumeClaim](m), "a cluster keeps its state in Redis")

	c := d.Spec.Template.Spec.Containers[0]
	peer := containerPort(t, c, "peer")
	assert.EqualValues(t, 7946, peer.ContainerPort)
	byName := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		byName[e.Name] = e
	}
	require.NotNil(t, byName["POD_IP"].ValueFrom, "POD_IP from the downward API")
	assert.Equal(t, "status.podIP", byName["POD_IP"].ValueFrom.FieldRef.FieldPath)
	assert.Equal(t, "$(POD_IP):7946", byName["APPSERVER_CLUSTER_ADVERTISEADDR"].Value, "each pod advertises its own IP")
	require.NotNil(t, byName["APPSERVER_CLUSTER_NODE"].ValueFrom)
	assert.Equal(t, "metadata.name", byName["APPSERVER_CLUSTER_NODE"].ValueFrom.FieldRef.FieldPath)

	env := podEnv(t, m, d)
	assert.Equal(t, "redis", env["APPSERVER_STORE"])
	assert.Equal(t, "redis.live.svc", env["APPSERVER_REDIS_HOST"])
	assert.Equal(t, "true", env["APPSERVER_CLUSTER_ENABLED"])
	assert.Equal(t, "0.0.0.0:7946", env["APPSERVER_CLUSTER_BINDADDR"])
	assert.Equal(t, "10.1.2.3:7946", env["APPSERVER_CLUSTER_ADVERTISEADDR"])
	assert.Equal(t, "https://live.example.com", env["APPSERVER_HTTP_PUBLICURL"], "config.* becomes APPSERVER_*")
	for _, secret := range []string{"APPSERVER_REDIS_PASSWORD", "APPSERVER_CLUSTER_SECRET", "APPSERVER_ADMIN_TOKEN", "APPSERVER_AUTH_SECRET"} {
		assert.NotEmpty(t, env[secret], secret)
		assert.NotContains(t, one[*corev1.ConfigMap](t, m, "").Data, secret, "secrets only in the Secret")
	}

	peers := one[*corev1.Service](t, m, "rel-roomengine-peers")
	assert.Equal(t, corev1.ClusterIPNone, peers.Spec.ClusterIP, "headless")
	assert.True(t, peers.Spec.PublishNotReadyAddresses, "a node leaving still answers its peers")
	require.Len(t, peers.Spec.Ports, 1)
	assert.EqualValues(t, 7946, peers.Spec.Ports[0].Port)
	assert.Equal(t, "peer", peers.Spec.Ports[0].TargetPort.String())
	assertSelects(t, peers.Spec.Selector, d)

	np := one[*networkingv1.NetworkPolicy](t, m, "")
	assertSelects(t, np.Spec.PodSelector.MatchLabels, d)
	var peerFrom []networkingv1.NetworkPolicyPeer
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			if p.Port.String() == "peer" {
				peerFrom = rule.From
			}
		}
	}
	require.Len(t, peerFrom, 1, "the peer port is open to the release's pods only")
	assertSelects(t, peerFrom[0].PodSelector.MatchLabels, d)

	sm := one[*monitoringv1.ServiceMonitor](t, m, "")
	require.Len(t, sm.Spec.Endpoints, 1)
	assert.Equal(t, "http", sm.Spec.Endpoints[0].Port)
	assert.Equal(t, "/metrics", sm.Spec.Endpoints[0].Path)
	assertSelects(t, sm.Spec.Selector.MatchLabels, &one[*corev1.Service](t, m, "rel-roomengine").ObjectMeta)
}

// A cluster needs its Redis: rendering without redis.host fails with a message that says so.
// A cluster whose values give no cluster.secret gets one generated into the release's
// Secret (one for all pods, kept across upgrades), so the nodes sign their peer messages:
// a node refuses to form a cluster on its pod address without it.
func TestChartClusterGeneratesItsSecret(t *testing.T) {
	m := render(t, "cluster.enabled=true", "replicaCount=3", "redis.host=redis.live.svc")
	d := one[*appsv1.Deployment](t, m, "")
	env := podEnv(t, m, d)
	assert.GreaterOrEqual(t, len(env["APPSERVER_CLUSTER_SECRET"]), 32, "cluster.secret is generated when not given")
	checkServerEnv(t, env, "cluster without a given secret")
}

func TestChartClusterNeedsRedis(t *testing.T) {
	_, err := helmTemplate(t, "cluster.enabled=true")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cluster.enabled needs redis.host")
}

// The strict decoding the chart tests rest on rejects a field the API does not have.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	_, err := decodeAll([]byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replicaz: 2}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "replicaz")
	_, err = decodeAll([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports:\n  - port: 1\n    targtPort: 2\n"))
	assert.ErrorContains(t, err, "targtPort")
}

// checkPod asserts what every mode promises about the pod: probes, the graceful stop, the
// security context, the disruption budget and a configuration the server accepts.
func checkPod(t *testing.T, m manifest, d *appsv1.Deployment) {
	t.Helper()
	spec := d.Spec.Template.Spec
	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	http := containerPort(t, c, "http")
	assert.EqualValues(t, 4000, http.ContainerPort)

	require.NotNil(t, c.ReadinessProbe)
	require.NotNil(t, c.ReadinessProbe.HTTPGet)
	assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	assert.Equal(t, "http", c.ReadinessProbe.HTTPGet.Port.String())
	require.NotNil(t, c.LivenessProbe)
	require.NotNil(t, c.LivenessProbe.HTTPGet)
	assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)

	require.NotNil(t, spec.TerminationGracePeriodSeconds)
	require.NotNil(t, c.Lifecycle)
	require.NotNil(t, c.Lifecycle.PreStop)
	require.NotNil(t, c.Lifecycle.PreStop.Sleep, "preStop sleeps (the image has no shell)")
	preStop := c.Lifecycle.PreStop.Sleep.Seconds
	assert.Positive(t, preStop, "preStop waits for the endpoints to drop the pod")
	assert.GreaterOrEqual(t, *spec.TerminationGracePeriodSeconds, int64(30))
	assert.Greater(t, *spec.TerminationGracePeriodSeconds, preStop+gracefulStopSeconds,
		"the grace period covers preStop and the whole graceful stop")

	require.NotNil(t, spec.SecurityContext)
	require.NotNil(t, spec.SecurityContext.RunAsNonRoot)
	assert.True(t, *spec.SecurityContext.RunAsNonRoot)
	require.NotNil(t, c.SecurityContext)
	require.NotNil(t, c.SecurityContext.ReadOnlyRootFilesystem)
	assert.True(t, *c.SecurityContext.ReadOnlyRootFilesystem)
	require.NotNil(t, c.SecurityContext.AllowPrivilegeEscalation)
	assert.False(t, *c.SecurityContext.AllowPrivilegeEscalation)

	svc := one[*corev1.Service](t, m, "rel-roomengine")
	assertSelects(t, svc.Spec.Selector, d)
	require.Len(t, svc.Spec.Ports, 1)
	assert.Equal(t, "http", svc.Spec.Ports[0].TargetPort.String())

	pdb := one[*policyv1.PodDisruptionBudget](t, m, "")
	assertSelects(t, pdb.Spec.Selector.MatchLabels, d)
	require.NotNil(t, pdb.Spec.MaxUnavailable)
	assert.Equal(t, "1", pdb.Spec.MaxUnavailable.String(), "an eviction never blocks for good, nor takes two nodes")

	// The pod's whole environment is a configuration this server starts with.
	env := podEnv(t, m, d)
	checkServerEnv(t, env, "chart")
}

// podEnv is the environment the container gets: its ConfigMap and Secret (envFrom) and its
// own env, with the downward API's values filled in as a kubelet would (POD_IP 10.1.2.3).
func podEnv(t *testing.T, m manifest, d *appsv1.Deployment) map[string]string {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	var sawCM, sawSecret bool
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			for k, v := range one[*corev1.ConfigMap](t, m, from.ConfigMapRef.Name).Data {
				env[k] = v
			}
			sawCM = true
		case from.SecretRef != nil:
			for k, v := range one[*corev1.Secret](t, m, from.SecretRef.Name).Data {
				env[k] = string(v)
			}
			sawSecret = true
		}
	}
	assert.True(t, sawCM, "settings from a ConfigMap")
	assert.True(t, sawSecret, "secrets from a Secret")
	downward := map[string]string{"status.podIP": "10.1.2.3", "metadata.name": "rel-roomengine-5d9c-x2x7q"}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			env[e.Name] = downward[e.ValueFrom.FieldRef.FieldPath]
		default:
			v := e.Value
			for k, val := range env {
				v = strings.ReplaceAll(v, "$("+k+")", val)
			}
			env[e.Name] = v
		}
	}
	return env
}

// checkServerEnv asserts that every APPSERVER_* variable of env is one of the server's
// configuration keys and that the server's configuration loads from env as it is (a cluster
// on the pods' addresses, which are not loopback, starts only with its cluster secret).
func checkServerEnv(t *testing.T, env map[string]string, where string) {
	t.Helper()
	known := map[string]bool{config.EnvConfigFile: true}
	for _, k := range config.Keys() {
		known[config.EnvName(k)] = true
	}
	var environ []string
	for k, v := range env {
		if !strings.HasPrefix(k, config.EnvPrefix) {
			continue
		}
		assert.True(t, known[k], "%s sets %s, which is not a configuration key", where, k)
		environ = append(environ, k+"="+v)
	}
	_, err := config.Load("", environ)
	assert.NoError(t, err, "%s: the server refuses this configuration", where)
}

func containerPort(t *testing.T, c corev1.Container, name string) corev1.ContainerPort {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("container %s has no port named %s", c.Name, name)
	return corev1.ContainerPort{}
}

func volume(t *testing.T, d *appsv1.Deployment, name string) corev1.Volume {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no volume %s", name)
	return corev1.Volume{}
}

func mount(t *testing.T, d *appsv1.Deployment, name string) corev1.VolumeMount {
	t.Helper()
	for _, v := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
		if v.Name == name {
			return v
		}
	}
	t.Fatalf("no mount of %s", name)
	return corev1.VolumeMount{}
}

// assertSelects asserts that selector picks the pods of d (or, given an ObjectMeta, that
// object).
func assertSelects(t *testing.T, selector map[string]string, target any) {
	t.Helper()
	require.NotEmpty(t, selector, "an empty selector selects everything")
	var l map[string]string
	switch v := target.(type) {
	case *appsv1.Deployment:
		l = v.Spec.Template.Labels
	case interface{ GetLabels() map[string]string }:
		l = v.GetLabels()
	}
	assert.True(t, labels.SelectorFromSet(selector).Matches(labels.Set(l)), "selector %v does not match %v", selector, l)
}

// existingSecret: the pods read the operator's own Secret and the chart makes none (so it
// never overwrites it); the cluster secret is left out unless given.
func TestChartExistingSecret(t *testing.T) {
	m := render(t, "existingSecret=live-secrets")
	assert.Zero(t, count[*corev1.Secret](m), "no Secret of the chart's own")
	d := one[*appsv1.Deployment](t, m, "rel-roomengine")
	var refs []string
	for _, from := range d.Spec.Template.Spec.Containers[0].EnvFrom {
		if from.SecretRef != nil {
			refs = append(refs, from.SecretRef.Name)
		}
	}
	assert.Equal(t, []string{"live-secrets"}, refs)

	single := render(t, "admin.token=admin-token-0123456789abcdef0123456789")
	data := one[*corev1.Secret](t, single, "rel-roomengine").Data
	assert.NotContains(t, data, "APPSERVER_CLUSTER_SECRET", "no cluster secret unless given")
	assert.NotContains(t, data, "APPSERVER_REDIS_PASSWORD")
	assert.Equal(t, "admin-token-0123456789abcdef0123456789", string(data["APPSERVER_ADMIN_TOKEN"]))
}
