// gen_lzw produces the LZW fixtures in tests/data/wire/lzw from Go's own
// compress/lzw (LSB order, 8-bit literals, exactly as memberlist uses it).
//
// For every *.bin file in DIR it writes *.lzw (the compressed bytes). For every
// *.z file (a hand-made code stream) it decodes it and writes *.dec on success
// or *.err holding Go's error. Run it through lzw_inputs.py, which creates the
// inputs and keeps only what the tests need.
package main

import (
	"bytes"
	"compress/lzw"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen_lzw DIR")
		os.Exit(2)
	}
	for _, name := range glob(os.Args[1], "*.bin") {
		compressOne(name)
	}
	for _, name := range glob(os.Args[1], "*.z") {
		decodeOne(name)
	}
}

func glob(dir, pattern string) []string {
	names, err := filepath.Glob(filepath.Join(dir, pattern))
	if err != nil {
		panic(err)
	}
	return names
}

func compressOne(name string) {
	in, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	var out bytes.Buffer
	w := lzw.NewWriter(&out, lzw.LSB, 8)
	if _, err := w.Write(in); err != nil {
		panic(err)
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	// Go must read its own output back, so a fixture is never garbage.
	back, err := decode(out.Bytes())
	if err != nil || !bytes.Equal(back, in) {
		panic("round trip mismatch for " + name)
	}
	write(strings.TrimSuffix(name, ".bin")+".lzw", out.Bytes())
}

func decodeOne(name string) {
	in, err := os.ReadFile(name)
	if err != nil {
		panic(err)
	}
	base := strings.TrimSuffix(name, ".z")
	out, err := decode(in)
	if err != nil {
		write(base+".err", []byte(err.Error()))
		return
	}
	write(base+".dec", out)
}

func decode(in []byte) ([]byte, error) {
	r := lzw.NewReader(bytes.NewReader(in), lzw.LSB, 8)
	defer r.Close()
	var out bytes.Buffer
	_, err := out.ReadFrom(r)
	return out.Bytes(), err
}

func write(name string, data []byte) {
	if err := os.WriteFile(name, data, 0o644); err != nil {
		panic(err)
	}
}
