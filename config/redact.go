package config

import (
	"encoding/json"
	"log/slog"
	"maps"
	"reflect"
	"strings"
	"time"
)

// Mask replaces a set secret in Redacted output; an unset secret shows as "" so the log
// still tells whether it was configured.
const Mask = "***"

// Redacted returns the configuration as nested maps keyed like the YAML file, with every
// secret replaced by Mask and durations as Go duration strings, for start-up logging.
//
// Redacted, LogValue and String have value receivers so a Config logged or printed by
// value is masked too.
func (c Config) Redacted() map[string]any {
	return redactStruct(reflect.ValueOf(c))
}

func redactStruct(v reflect.Value) map[string]any {
	out := map[string]any{}
	for _, f := range fields(v.Type()) {
		fv := v.FieldByIndex(f.Index)
		name := yamlName(f)
		switch {
		case f.Tag.Get("secret") == "true":
			if fv.String() != "" {
				out[name] = Mask
			} else {
				out[name] = ""
			}
		case !isLeaf(f.Type):
			out[name] = redactStruct(fv)
		case f.Type == durationType:
			out[name] = time.Duration(fv.Int()).String()
		case f.Type.Kind() == reflect.Slice:
			out[name] = append([]string{}, fv.Convert(reflect.TypeFor[[]string]()).Interface().([]string)...)
		case f.Type.Kind() == reflect.Map:
			m, _ := fv.Interface().(map[string]string)
			out[name] = maps.Clone(m)
		default:
			out[name] = fv.Interface()
		}
	}
	return out
}

// LogValue logs the configuration as nested groups with secrets masked, so
// slog.Info("config", "config", cfg) is safe.
func (c Config) LogValue() slog.Value {
	return groupValue(c.Redacted(), reflect.TypeFor[Config]())
}

// groupValue keeps struct field order, which reads better than sorted keys.
func groupValue(m map[string]any, t reflect.Type) slog.Value {
	var attrs []slog.Attr
	for _, f := range fields(t) {
		name := yamlName(f)
		if sub, ok := m[name].(map[string]any); ok && !isLeaf(f.Type) {
			attrs = append(attrs, slog.Attr{Key: name, Value: groupValue(sub, f.Type)})
			continue
		}
		switch x := m[name].(type) {
		case []string:
			attrs = append(attrs, slog.String(name, strings.Join(x, ",")))
		default:
			attrs = append(attrs, slog.Any(name, x))
		}
	}
	return slog.GroupValue(attrs...)
}

// String is the redacted configuration as JSON, so printing a Config with %v cannot leak a
// secret either.
func (c Config) String() string {
	b, err := json.Marshal(c.Redacted())
	if err != nil {
		return "config: " + err.Error()
	}
	return string(b)
}
