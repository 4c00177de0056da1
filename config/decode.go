package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts every configuration variable.
const EnvPrefix = "APPSERVER_"

// EnvConfigFile is the one APPSERVER_ variable that is not a key: it lets a container name
// the config file without a command-line flag, so Load must not reject it as a typo.
const EnvConfigFile = "APPSERVER_CONFIG"

// StringList is a list of strings written either as a YAML list or as one comma-separated
// string ("websocket,mns"), the form an environment variable can carry.
type StringList []string

// UnmarshalYAML accepts a scalar (comma-separated) or a sequence of scalars.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = splitList(n.Value)
		return nil
	case yaml.SequenceNode:
		out := StringList{}
		for _, item := range n.Content {
			if item.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: want a list of strings", item.Line)
			}
			if v := strings.TrimSpace(item.Value); v != "" {
				out = append(out, v)
			}
		}
		*l = out
		return nil
	}
	return fmt.Errorf("line %d: want a list or a comma-separated string", n.Line)
}

func splitList(s string) StringList {
	out := StringList{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// dedup drops repeated entries, keeping the first, so a backend listed twice is not
// started twice.
func (l StringList) dedup() StringList {
	if l == nil {
		return nil
	}
	seen := map[string]bool{}
	out := StringList{}
	for _, v := range l {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

var (
	durationType   = reflect.TypeFor[time.Duration]()
	stringListType = reflect.TypeFor[StringList]()
	configType     = reflect.TypeFor[Config]()
)

// leaf is one settable key of Config.
type leaf struct {
	path   string // "live.noPublishTimeout"
	env    string // "APPSERVER_LIVE_NOPUBLISHTIMEOUT"
	index  []int  // reflect.Value.FieldByIndex
	typ    reflect.Type
	secret bool
}

// isLeaf reports whether values of t are set as a whole rather than key by key.
func isLeaf(t reflect.Type) bool {
	return t == durationType || t == stringListType || t.Kind() != reflect.Struct
}

// fields lists the yaml-tagged exported fields of a struct type.
func fields(t reflect.Type) []reflect.StructField {
	var out []reflect.StructField
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || yamlName(f) == "" {
			continue
		}
		out = append(out, f)
	}
	return out
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// EnvName is the environment variable of a dotted key path.
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

var leavesOnce = sync.OnceValues(func() ([]leaf, map[string]leaf) {
	var list []leaf
	var walk func(t reflect.Type, prefix string, index []int)
	walk = func(t reflect.Type, prefix string, index []int) {
		for _, f := range fields(t) {
			path := prefix + yamlName(f)
			idx := append(append([]int(nil), index...), f.Index...)
			if isLeaf(f.Type) {
				list = append(list, leaf{path: path, env: EnvName(path), index: idx, typ: f.Type, secret: f.Tag.Get("secret") == "true"})
				continue
			}
			walk(f.Type, path+".", idx)
		}
	}
	walk(configType, "", nil)
	byEnv := map[string]leaf{}
	for _, l := range list {
		if prev, dup := byEnv[l.env]; dup {
			// Two keys mapping to one variable would make one of them unreachable.
			panic("config: keys " + prev.path + " and " + l.path + " share " + l.env)
		}
		byEnv[l.env] = l
	}
	return list, byEnv
})

// Keys lists every dotted key path, in struct order.
func Keys() []string {
	list, _ := leavesOnce()
	out := make([]string, len(list))
	for i, l := range list {
		out[i] = l.path
	}
	return out
}

// ---- file ----

func (c *Config) loadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %s", oneLine(err.Error()))
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config: %s: %s", path, oneLine(strings.TrimPrefix(err.Error(), "yaml: ")))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // an empty file keeps the defaults
	}
	// The checking walk runs first because yaml's own errors name Go types and may span
	// lines; it reports the first problem by key path and line in the operator's terms.
	fc := fileChecker{file: path, sources: c.sources}
	if err := fc.walk(doc.Content[0], configType, "", false); err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		// Only reached for what the walk does not model (e.g. integer overflow, a tag such
		// as !!int on a string). yaml quotes the value, so secrets are masked first.
		return fmt.Errorf("config: %s: %s", path, fc.mask(oneLine(strings.TrimPrefix(err.Error(), "yaml: "))))
	}
	return nil
}

type fileChecker struct {
	file    string
	sources map[string]source
	secrets []string // values of secret keys seen by the walk, masked in decoder errors
}

// mask replaces every secret value in msg.
func (fc *fileChecker) mask(msg string) string {
	for _, s := range fc.secrets {
		msg = strings.ReplaceAll(msg, s, Mask)
	}
	return msg
}

func (fc *fileChecker) errAt(n *yaml.Node, path, format string, args ...any) error {
	return &Error{Key: path, Msg: fmt.Sprintf(format, args...), Where: fmt.Sprintf("%s:%d", fc.file, n.Line)}
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// walk checks n against t. secret marks a secret key: its value is never quoted in an
// error, and neither is a scalar found where a section holding secrets belongs (admin:
// TOKEN instead of admin: {token: TOKEN}).
func (fc *fileChecker) walk(n *yaml.Node, t reflect.Type, path string, secret bool) error {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	label := path
	if label == "" {
		label = fc.file
	}
	if isLeaf(t) {
		fc.sources[path] = source{where: fmt.Sprintf("%s:%d", fc.file, n.Line)}
	}
	if isNull(n) {
		return nil
	}
	hide := secret || holdsSecret(t)
	if hide && n.Kind == yaml.ScalarNode && n.Value != "" {
		fc.secrets = append(fc.secrets, n.Value)
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			return fc.errAt(n, label, "want a duration like 500ms or 3m")
		}
		_, err := parseDuration(n.Value)
		if err != nil {
			return fc.errAt(n, label, "%s", err.Error())
		}
	case t == stringListType || (t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String):
		switch n.Kind {
		case yaml.ScalarNode:
		case yaml.SequenceNode:
			for _, item := range n.Content {
				if item.Kind != yaml.ScalarNode {
					return fc.errAt(item, label, "want a list of strings")
				}
			}
		default:
			return fc.errAt(n, label, "want a list or a comma-separated string")
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fc.errAt(n, label, "want a mapping of keys, got %s", describe(n, hide))
		}
		byName := map[string]reflect.StructField{}
		var names []string
		for _, f := range fields(t) {
			byName[yamlName(f)] = f
			names = append(names, yamlName(f))
		}
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" && k.ShortTag() == "!!merge" {
				continue // merge keys are left to the decoder
			}
			kpath := joinPath(path, k.Value)
			if line, dup := seen[k.Value]; dup {
				return fc.errAt(k, kpath, "duplicate key (first at line %d)", line)
			}
			seen[k.Value] = k.Line
			f, ok := byName[k.Value]
			if !ok {
				return fc.errAt(k, kpath, "unknown key%s", suggest(k.Value, names, joinPath(path, "")))
			}
			if err := fc.walk(v, f.Type, kpath, f.Tag.Get("secret") == "true"); err != nil {
				return err
			}
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			return fc.errAt(n, label, "want a mapping of strings, got %s", describe(n, hide))
		}
		for i := 1; i < len(n.Content); i += 2 {
			if n.Content[i].Kind != yaml.ScalarNode {
				return fc.errAt(n.Content[i], joinPath(path, n.Content[i-1].Value), "want a string")
			}
		}
	case t.Kind() == reflect.String:
		if n.Kind != yaml.ScalarNode {
			return fc.errAt(n, label, "want a string, got %s", describe(n, hide))
		}
	case t.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return fc.errAt(n, label, "want true or false, got %s", describe(n, hide))
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			return fc.errAt(n, label, "want an integer, got %s", describe(n, hide))
		}
	case t.Kind() == reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
			return fc.errAt(n, label, "want a number, got %s", describe(n, hide))
		}
	}
	return nil
}

func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// describe names what n is for an error message; hide keeps a scalar's value out of it.
func describe(n *yaml.Node, hide bool) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case hide:
		return "a single value (not shown: it may be a secret)"
	}
	return strconv.Quote(n.Value)
}

// holdsSecret reports whether t is a section with a secret key somewhere below it.
func holdsSecret(t reflect.Type) bool {
	if isLeaf(t) {
		return false
	}
	for _, f := range fields(t) {
		if f.Tag.Get("secret") == "true" || holdsSecret(f.Type) {
			return true
		}
	}
	return false
}

// ---- environment ----

func (c *Config) applyEnv(environ []string) error {
	list, byEnv := leavesOnce()
	names := make([]string, len(list))
	for i, l := range list {
		names[i] = l.env
	}
	v := reflect.ValueOf(c).Elem()
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) || name == EnvConfigFile {
			continue
		}
		l, ok := byEnv[name]
		if !ok {
			return &Error{Key: name, Msg: "unknown variable" + suggest(name, names, "")}
		}
		if err := setString(v.FieldByIndex(l.index), val); err != nil {
			return &Error{Key: name, Msg: err.Error()}
		}
		c.sources[l.path] = source{env: name}
	}
	return nil
}

// setString sets a leaf from its textual (environment) form.
func setString(f reflect.Value, raw string) error {
	s := strings.TrimSpace(raw)
	switch {
	case f.Type() == durationType:
		d, err := parseDuration(s)
		if err != nil {
			return err
		}
		f.SetInt(int64(d))
	case f.Type() == stringListType || (f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String):
		f.Set(reflect.ValueOf([]string(splitList(s))).Convert(f.Type()))
	case f.Kind() == reflect.Map:
		m := map[string]string{}
		for _, p := range splitList(s) {
			k, val, ok := strings.Cut(p, "=")
			if !ok {
				return fmt.Errorf("invalid entry %q (want k=v,k=v)", p)
			}
			m[strings.TrimSpace(k)] = strings.TrimSpace(val)
		}
		f.Set(reflect.ValueOf(m))
	case f.Kind() == reflect.String:
		f.SetString(raw)
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("invalid boolean %q (want true or false)", raw)
		}
		f.SetBool(b)
	case f.Kind() >= reflect.Int && f.Kind() <= reflect.Int64:
		n, err := strconv.ParseInt(s, 10, f.Type().Bits())
		if err != nil {
			return fmt.Errorf("invalid integer %q", raw)
		}
		f.SetInt(n)
	case f.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("invalid number %q", raw)
		}
		f.SetFloat(x)
	default:
		return fmt.Errorf("unsupported type %s", f.Type())
	}
	return nil
}

// parseDuration accepts Go duration syntax only. A bare number is refused, even 0, because
// "timeout: 500" is ambiguous (ms? s?) and the old config.js used milliseconds.
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("invalid duration %q: a bare number has no unit (use Go syntax like 500ms, 3m)", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (use Go syntax like 500ms, 3m)", s)
	}
	return d, nil
}

// suggest returns "; did you mean X?" for a near miss among candidates (case or a couple of
// typos), which is the usual cause of an unknown key: accessKeyId for accessKeyID.
func suggest(name string, candidates []string, prefix string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if strings.EqualFold(c, name) {
			return "; did you mean " + prefix + c + "?"
		}
		if d := editDistance(strings.ToLower(c), strings.ToLower(name)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return "; did you mean " + prefix + best + "?"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func oneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "; ")
}
