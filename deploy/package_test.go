package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"debug/macho"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// packageFull asks TestPackages for everything `make package` builds (three archives, two
// .deb); `make test` builds the linux/arm64 archive and the amd64 package, which cover every
// kind of check (an aarch64 binary, a binary to run, a .deb for dpkg-deb and lintian).
var packageFull = os.Getenv("ROOMENGINE_PACKAGE_FULL") == "1"

// builtVersion is what scripts/version.sh says for this checkout.
func builtVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("../scripts/version.sh").Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// TestPackages runs scripts/package.sh (what `make package` runs) into a temporary dist/ and
// checks what it built the way an operator would meet it: the checksums, each archive's files
// and binary, and each Debian package's control data, files, scripts and lintian's verdict.
func TestPackages(t *testing.T) {
	t.Parallel() // the slow tests overlap: lintian and podman wait on disk while Go compiles
	platforms, debs := "linux/arm64", "amd64"
	if packageFull {
		platforms, debs = "linux/amd64 linux/arm64 darwin/arm64", "amd64 arm64"
	}
	dist := filepath.Join(t.TempDir(), "dist")
	cmd := exec.Command("../scripts/package.sh")
	cmd.Env = append(os.Environ(), "DIST="+dist, "PLATFORMS="+platforms, "DEB_ARCHS="+debs)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "scripts/package.sh:\n%s", out)
	version := builtVersion(t)

	var want []string
	for _, p := range strings.Fields(platforms) {
		want = append(want, "roomengine_"+version+"_"+strings.ReplaceAll(p, "/", "_")+".tar.gz")
	}
	for _, a := range strings.Fields(debs) {
		want = append(want, "roomengine_"+version+"_"+a+".deb")
	}

	t.Run("SHA256SUMS", func(t *testing.T) {
		sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
		require.NoError(t, err)
		var listed []string
		for line := range strings.Lines(string(sums)) {
			sum, name, ok := strings.Cut(strings.TrimSpace(line), "  ")
			require.True(t, ok, "sha256sum format: %q", line)
			assert.Len(t, sum, 64)
			assert.NotContains(t, name, "/", "bare file names")
			listed = append(listed, name)
		}
		assert.ElementsMatch(t, want, listed)
		check := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
		check.Dir = dist
		out, err := check.CombinedOutput()
		assert.NoError(t, err, "sha256sum --check:\n%s", out)

		// A changed file is caught by the same check.
		bad := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(bad, "SHA256SUMS"), sums, 0o644))
		for _, name := range listed {
			data, err := os.ReadFile(filepath.Join(dist, name))
			require.NoError(t, err)
			data[len(data)/2] ^= 1
			require.NoError(t, os.WriteFile(filepath.Join(bad, name), data, 0o644))
		}
		check = exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
		check.Dir = bad
		assert.Error(t, check.Run(), "sha256sum --check passes changed files")
	})

	for _, p := range strings.Fields(platforms) {
		osName, arch, _ := strings.Cut(p, "/")
		t.Run("archive "+p, func(t *testing.T) {
			name := "roomengine_" + version + "_" + osName + "_" + arch
			files := untar(t, filepath.Join(dist, name+".tar.gz"))
			var names []string
			for n := range files {
				names = append(names, n)
			}
			assert.ElementsMatch(t, []string{name + "/appserver", name + "/README.md", name + "/LICENSE", name + "/app.yaml"}, names)
			assert.Equal(t, fileText(t, "app.yaml"), string(files[name+"/app.yaml"]), "the sample config")
			assert.Equal(t, fileText(t, "../LICENSE"), string(files[name+"/LICENSE"]))
			checkBinary(t, files[name+"/appserver"], osName, arch, version)
		})
	}

	for _, arch := range strings.Fields(debs) {
		t.Run("deb "+arch, func(t *testing.T) {
			checkDeb(t, filepath.Join(dist, "roomengine_"+version+"_"+arch+".deb"), arch, version)
		})
	}
}

// checkBinary asserts that bin is a static, stripped executable for osName/arch and, when it
// runs here, that `appserver version` prints the version that was built.
func checkBinary(t *testing.T, bin []byte, osName, arch, version string) {
	t.Helper()
	if osName == "darwin" {
		f, err := macho.NewFile(bytes.NewReader(bin))
		require.NoError(t, err, "a Mach-O executable")
		assert.Equal(t, macho.CpuArm64, f.Cpu)
		return
	}
	f, err := elf.NewFile(bytes.NewReader(bin))
	require.NoError(t, err, "an ELF executable")
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	assert.Equal(t, machine, f.Machine, "%s binary", arch)
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "static: no dynamic loader")
	}
	assert.Nil(t, f.Section(".symtab"), "stripped")
	if arch != hostArch(t) {
		return
	}
	path := filepath.Join(t.TempDir(), "appserver")
	require.NoError(t, os.WriteFile(path, bin, 0o755))
	out, err := exec.Command(path, "version").Output()
	require.NoError(t, err)
	first, _, _ := strings.Cut(string(out), "\n")
	assert.Equal(t, "appserver "+version, first, "appserver version prints the version it was built as")
	assert.NotContains(t, string(out), "unknown", "commit and date stamped:\n%s", out)
}

func hostArch(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// checkDeb checks one Debian package with dpkg-deb and lintian.
func checkDeb(t *testing.T, deb, arch, version string) {
	t.Helper()
	field := func(name string) string {
		out, err := exec.Command("dpkg-deb", "--field", deb, name).Output()
		require.NoError(t, err, "dpkg-deb --field %s", name)
		return strings.TrimRight(string(out), "\n")
	}
	assert.Equal(t, "roomengine", field("Package"))
	assert.Equal(t, version, field("Version"))
	assert.Equal(t, arch, field("Architecture"))
	assert.Contains(t, field("Depends"), "adduser", "postinst creates the user with adduser")
	desc := strings.Split(field("Description"), "\n")
	assert.Greater(t, len(desc), 3, "an extended description")

	root := t.TempDir()
	out, err := exec.Command("dpkg-deb", "--extract", deb, root).CombinedOutput()
	require.NoError(t, err, "%s", out)
	ctl := t.TempDir()
	out, err = exec.Command("dpkg-deb", "--control", deb, ctl).CombinedOutput()
	require.NoError(t, err, "%s", out)

	bin, err := os.ReadFile(filepath.Join(root, "usr/bin/appserver"))
	require.NoError(t, err, "the binary at /usr/bin/appserver")
	checkBinary(t, bin, "linux", arch, version)

	unit := fileText(t, filepath.Join(root, "lib/systemd/system/roomengine.service"))
	svc := unitService(unit)
	assert.Equal(t, "/usr/bin/appserver -config /etc/roomengine/app.yaml", svc["ExecStart"])
	assert.Equal(t, strings.ReplaceAll(fileText(t, "roomengine.service"), "/usr/local/bin/appserver", "/usr/bin/appserver"),
		unit, "the packaged unit is deploy/roomengine.service with the package's binary path")

	assert.Equal(t, fileText(t, "app.yaml"), fileText(t, filepath.Join(root, "etc/roomengine/app.yaml")))
	assert.Equal(t, "/etc/roomengine/app.yaml\n", fileText(t, filepath.Join(ctl, "conffiles")),
		"app.yaml is a conffile: an upgrade keeps the operator's edits")
	for _, f := range []string{"usr/share/doc/roomengine/copyright", "usr/share/doc/roomengine/changelog.gz",
		"usr/share/lintian/overrides/roomengine"} {
		assert.FileExists(t, filepath.Join(root, f))
	}

	postinst := fileText(t, filepath.Join(ctl, "postinst"))
	assert.Regexp(t, `adduser --system[^\n]*roomengine`, postinst, "postinst creates the roomengine system user")
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		var code strings.Builder // the script without its comments
		for line := range strings.Lines(fileText(t, filepath.Join(ctl, script))) {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				code.WriteString(line)
			}
		}
		text := code.String()
		out, err := exec.Command("sh", "-n", filepath.Join(ctl, script)).CombinedOutput()
		assert.NoError(t, err, "%s does not parse: %s", script, out)
		for _, starts := range []string{"systemctl enable", "systemctl start", "systemctl restart", "--now", "deb-systemd-invoke start"} {
			assert.NotContains(t, text, starts, "%s must not enable or start the service by itself", script)
		}
	}

	lintian := exec.Command("lintian", "--no-tag-display-limit", "--display-info", deb)
	report, err := lintian.CombinedOutput()
	var errs []string
	for line := range strings.Lines(string(report)) {
		if strings.HasPrefix(line, "E: ") {
			errs = append(errs, strings.TrimSpace(line))
		}
	}
	assert.Empty(t, errs, "lintian errors")
	if err != nil && len(errs) == 0 {
		t.Errorf("lintian failed without naming an error: %v\n%s", err, report)
	}
	t.Logf("lintian %s:\n%s", filepath.Base(deb), report)
}

// untar reads a .tar.gz into memory: file name → contents.
func untar(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	gz, err := gzip.NewReader(f)
	require.NoError(t, err)
	files := map[string][]byte{}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		require.NoError(t, err)
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		files[h.Name] = data
		if strings.HasSuffix(h.Name, "/appserver") {
			assert.EqualValues(t, 0o755, h.Mode&0o777, "the binary is executable")
		}
	}
}

func fileText(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(data)
}

// unitService returns the [Service] settings of a systemd unit.
func unitService(unit string) map[string]string {
	settings := map[string]string{}
	in := false
	for line := range strings.Lines(unit) {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			in = line == "[Service]"
		case in:
			if k, v, ok := strings.Cut(line, "="); ok {
				settings[k] = v
			}
		}
	}
	return settings
}

// tarEntry is one file of an exported container.
type tarEntry struct {
	data []byte
	mode int64
	uid  int
}

// untarStream reads a tar stream (podman export) into memory by path, without the leading "./".
func untarStream(t *testing.T, stream []byte) map[string]tarEntry {
	t.Helper()
	files := map[string]tarEntry{}
	tr := tar.NewReader(bytes.NewReader(stream))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		files[name] = tarEntry{data: data, mode: h.Mode, uid: h.Uid}
	}
}
