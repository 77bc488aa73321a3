// Package archtest checks the shape of the code that the rest of the tests
// cannot: which package may import which, and how long a function may be.
package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "remora.dev/remora"

// maxLines is the longest a function outside the tests may be: a reader
// holds it in the head at once.
const maxLines = 80

// sourceFile is one parsed non-test Go file of the module.
type sourceFile struct {
	pkg  string // import path
	path string // relative to the module root
	file *ast.File
	fset *token.FileSet
}

func sources(t *testing.T) []sourceFile {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var out []sourceFile
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			// tools/ holds modules of their own; testdata is not code.
			if rel == "tools" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		if f.Name.Name == "main" && filepath.Dir(rel) != "cmd/remora" {
			return nil
		}
		f, err = parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		out = append(out, sourceFile{pkg: module + "/" + filepath.ToSlash(filepath.Dir(rel)), path: rel, file: f, fset: fset})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("found only %d source files below %s", len(out), root)
	}
	return out
}

func imports(f *ast.File) []string {
	var out []string
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		out = append(out, p)
	}
	return out
}

func under(pkg, dir string) bool {
	return pkg == module+"/"+dir || strings.HasPrefix(pkg, module+"/"+dir+"/")
}

// TestImports: the daemon is imported by the command alone; the webhook
// knows nothing of the daemon; the shared packages (the repository,
// storage, the annotation contract, the control socket) depend on neither.
func TestImports(t *testing.T) {
	rules := []struct {
		importer, imported string
		allowed            func(importer string) bool
	}{
		{"", "agent", func(p string) bool { return under(p, "agent") || p == module+"/cmd/remora" }},
		{"webhook", "agent", nil},
		{"repo", "agent", nil},
		{"repo", "webhook", nil},
		{"storage", "agent", nil},
		{"storage", "repo", nil},
		{"storage", "webhook", nil},
		{"spec", "agent", nil},
		{"spec", "webhook", nil},
		{"control", "agent", nil},
		{"sidecar", "agent", nil},
		{"drivers", "agent", nil},
		{"drivers", "repo", nil},
	}
	for _, sf := range sources(t) {
		for _, imp := range imports(sf.file) {
			for _, r := range rules {
				if r.importer != "" && !under(sf.pkg, r.importer) || !under(imp, r.imported) {
					continue
				}
				if r.allowed != nil && r.allowed(sf.pkg) {
					continue
				}
				t.Errorf("%s imports %s", sf.path, imp)
			}
		}
	}
}

// TestBackendsArePackages: each storage backend is a package of its own
// below storage/.
func TestBackendsArePackages(t *testing.T) {
	for _, sf := range sources(t) {
		if sf.pkg != module+"/storage" {
			continue
		}
		for _, imp := range imports(sf.file) {
			if strings.Contains(imp, "minio") {
				t.Errorf("%s: the storage package itself speaks S3 (%s); backends live in storage/<name>", sf.path, imp)
			}
		}
	}
}

// TestFunctionLength: no function outside the tests is longer than maxLines.
func TestFunctionLength(t *testing.T) {
	for _, sf := range sources(t) {
		for _, d := range sf.file.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			n := sf.fset.Position(fn.End()).Line - sf.fset.Position(fn.Pos()).Line + 1
			if n > maxLines {
				name := fn.Name.Name
				if fn.Recv != nil && len(fn.Recv.List) > 0 {
					name = recvName(fn.Recv.List[0].Type) + "." + name
				}
				t.Errorf("%s: %s is %d lines (at most %d)", sf.path, name, n, maxLines)
			}
		}
	}
}

func recvName(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.StarExpr:
		return recvName(x.X)
	case *ast.Ident:
		return x.Name
	case *ast.IndexExpr:
		return recvName(x.X)
	}
	return "?"
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
