package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// chartDir is the Helm chart under test.
const chartDir = "helm/roomengine"

// tool returns the path of a pinned packaging tool (helm, nfpm), built by scripts/tool.sh
// when missing; $HELM or $NFPM name one to use instead.
// Parallel tests share one build of each tool.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p := os.Getenv(strings.ToUpper(name)); p != "" {
		return p
	}
	tools.Lock()
	defer tools.Unlock()
	if p, ok := tools.path[name]; ok {
		return p
	}
	out, err := exec.Command("../scripts/tool.sh", name).Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Fatalf("scripts/tool.sh %s: %v\n%s", name, err, exit.Stderr)
	}
	require.NoError(t, err)
	tools.path[name] = strings.TrimSpace(string(out))
	return tools.path[name]
}

var tools = struct {
	sync.Mutex
	path map[string]string
}{path: map[string]string{}}

// decoder decodes YAML into the typed Kubernetes objects the chart may render, strictly: an
// unknown or duplicated field is an error, as the API server's strict field validation
// would make it.
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
		json.SerializerOptions{Yaml: true, Strict: true})
}()

// decodeAll splits a multi-document YAML stream and decodes each object strictly.
func decodeAll(stream []byte) ([]runtime.Object, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var objs []runtime.Object
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		obj, _, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			return nil, err
		}
		objs = append(objs, obj)
	}
}

// stripComments drops whole-line comments (helm prints "# Source: …" before each document).
func stripComments(doc []byte) []byte {
	var out bytes.Buffer
	for line := range strings.Lines(string(doc)) {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			out.WriteString(line)
		}
	}
	return out.Bytes()
}

// render runs `helm template` on the chart with the given --set values and decodes what it
// prints.
func render(t *testing.T, set ...string) manifest {
	t.Helper()
	out, err := helmTemplate(t, set...)
	require.NoError(t, err)
	objs, err := decodeAll(out)
	require.NoError(t, err, "strict decoding of the rendered chart:\n%s", out)
	return manifest{objs: objs}
}

func helmTemplate(t *testing.T, set ...string) ([]byte, error) {
	t.Helper()
	args := []string{"template", "rel", chartDir, "--namespace", "live"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	cmd := exec.Command(tool(t, "helm"), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(),
		"HELM_DATA_HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, errors.New(err.Error() + ": " + stderr.String())
	}
	return out, nil
}

// manifest is a rendered chart.
type manifest struct{ objs []runtime.Object }

// one returns the only object of type T (named name when name is not ""), failing otherwise.
func one[T runtime.Object](t *testing.T, m manifest, name string) T {
	t.Helper()
	var found []T
	for _, o := range m.objs {
		if v, ok := o.(T); ok && (name == "" || nameOf(o) == name) {
			found = append(found, v)
		}
	}
	require.Len(t, found, 1, "rendered objects of type %T named %q", *new(T), name)
	return found[0]
}

// count is how many objects of type T were rendered.
func count[T runtime.Object](m manifest) int {
	n := 0
	for _, o := range m.objs {
		if _, ok := o.(T); ok {
			n++
		}
	}
	return n
}

func nameOf(o runtime.Object) string {
	if a, ok := o.(interface{ GetName() string }); ok {
		return a.GetName()
	}
	return ""
}

// tempFile writes data to a fresh file and returns its path.
func tempFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}
