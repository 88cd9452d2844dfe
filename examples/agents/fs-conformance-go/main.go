// fs-conformance-go: an ordinary Go program (GOOS=wasip1, package os only) that checks the file system
// the executor gives an agent granted `scratch`: relative and absolute paths at `/`, `/scratch`, create,
// write, seek, read back, stat, truncate, readdir, rename, remove, mkdir, symlinks inside, and the refusals
// a program expects (`..` out of the root, a symlink pointing out, a host path).
//
// Prints one line per check, "<check> ok" or "<check> FAIL <detail>", then "passed N/M", and exits 0 only
// if every check passed. Go reads the clock at start-up, so its template grants `clock` too.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
)

var checks, passed int

func check(name string, err error) {
	checks++
	if err == nil {
		passed++
		fmt.Printf("%s ok\n", name)
	} else {
		fmt.Printf("%s FAIL %v\n", name, err)
	}
}

// refused passes when err is an error: the operation must not have worked.
func refused(name string, err error) {
	if err == nil {
		check(name, errors.New("the operation succeeded"))
		return
	}
	check(name, nil)
}

func want(cond bool, format string, args ...any) error {
	if cond {
		return nil
	}
	return fmt.Errorf(format, args...)
}

func names(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	out := []string{}
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func main() {
	wd, err := os.Getwd()
	check("getwd-root", errors.Join(err, want(wd == "/", "working directory %q", wd)))
	_, err = os.Stat("note.txt")
	check("empty-at-start", want(errors.Is(err, fs.ErrNotExist), "note.txt: %v", err))
	check("relative-create", os.WriteFile("note.txt", []byte("hello, file\n"), 0o644))
	got, err := os.ReadFile("/note.txt")
	check("absolute-same-file", errors.Join(err, want(string(got) == "hello, file\n", "read %q", got)))

	f, err := os.OpenFile("data.bin", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	check("open-rdwr", err)
	if err == nil {
		_, err = f.Write([]byte("0123456789"))
		check("write", err)
		off, err := f.Seek(3, io.SeekStart)
		check("seek-set", errors.Join(err, want(off == 3, "offset %d", off)))
		buf := make([]byte, 4)
		_, err = io.ReadFull(f, buf)
		check("read-after-seek", errors.Join(err, want(string(buf) == "3456", "read %q", buf)))
		off, err = f.Seek(0, io.SeekEnd)
		check("seek-end", errors.Join(err, want(off == 10, "offset %d", off)))
		err = f.Truncate(4)
		info, serr := f.Stat()
		check("ftruncate", errors.Join(err, serr, want(serr == nil && info.Size() == 4, "size after truncate")))
		_, err = f.WriteAt([]byte("Z"), 8)
		check("pwrite-past-end", err)
		check("close", f.Close())
	}
	info, err := os.Stat("data.bin")
	check("stat-regular", errors.Join(err, want(err == nil && info.Mode().IsRegular() && info.Size() == 9, "stat data.bin")))

	check("mkdir", os.Mkdir("sub", 0o755))
	info, err = os.Stat("sub")
	check("stat-dir", errors.Join(err, want(err == nil && info.IsDir(), "sub is not a directory")))
	check("nested-create", os.WriteFile("sub/inner.txt", []byte("inner"), 0o644))
	root := names("/")
	check("readdir-root", want(slices.Contains(root, "note.txt") && slices.Contains(root, "sub") &&
		slices.Contains(root, "scratch"), "readdir / = %v", root))
	check("readdir-sub", want(slices.Equal(names("sub"), []string{"inner.txt"}), "readdir sub = %v", names("sub")))
	err = os.Rename("sub/inner.txt", "moved.txt")
	got, rerr := os.ReadFile("moved.txt")
	check("rename", errors.Join(err, rerr, want(string(got) == "inner", "moved.txt holds %q", got)))
	check("rmdir", os.Remove("sub"))
	err = os.Remove("moved.txt")
	_, serr := os.Stat("moved.txt")
	check("unlink", errors.Join(err, want(errors.Is(serr, fs.ErrNotExist), "moved.txt still there")))

	err = os.WriteFile("/scratch/s.txt", []byte("s"), 0o644)
	check("scratch-dir", errors.Join(err, want(slices.Contains(names("scratch"), "s.txt"), "scratch/s.txt not listed")))

	err = os.Symlink("note.txt", "link")
	got, rerr = os.ReadFile("link")
	check("symlink-inside", errors.Join(err, rerr, want(bytes.Equal(got, []byte("hello, file\n")), "read %q", got)))
	target, err := os.Readlink("link")
	check("readlink", errors.Join(err, want(target == "note.txt", "link -> %q", target)))
	check("unlink-symlink", os.Remove("link"))

	// Refusals: nothing outside the run's own directory can be named.
	_, err = os.Create("../escape.txt")
	_, serr = os.Stat("/escape.txt") // Go cleans "../escape.txt" to "/escape.txt": it must stay inside
	check("dotdot-stays-inside", want(err != nil || serr == nil, "../escape.txt went somewhere else"))
	_ = os.Remove("/escape.txt")
	_, err = os.ReadFile("/etc/passwd")
	refused("host-path-absent", err)
	if os.Symlink("/etc/passwd", "out") == nil {
		_, err = os.ReadFile("out")
		refused("symlink-out-refused", err)
		_ = os.Remove("out")
	} else {
		check("symlink-out-refused", nil)
	}
	if os.Symlink("../../../../etc/passwd", "up") == nil {
		_, err = os.ReadFile("up")
		refused("symlink-up-refused", err)
		_ = os.Remove("up")
	} else {
		check("symlink-up-refused", nil)
	}

	fmt.Printf("passed %d/%d\n", passed, checks)
	if passed != checks {
		os.Exit(1)
	}
}
