// Package gen is what the Go contenders of `cargo xtask bench bulk` share: the
// benchmark documents (see ../../../README.md), the common command line and
// the READY/go/RESULT handshake with xtask.
package gen

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

var levels = [4]string{"INFO", "WARN", "ERROR", "DEBUG"}

var filler = func() string {
	b := make([]byte, 0, 26*90)
	for k := 0; k < 90; k++ {
		b = append(b, "abcdefghijklmnopqrstuvwxyz"...)
	}
	return string(b)
}()

// Doc is document i of the shared generator, exactly `size` bytes long.
func Doc(i int, size int) []byte {
	base := make([]byte, 0, size)
	base = append(base, `{"@timestamp":`...)
	base = strconv.AppendInt(base, 1700000000000+int64(i)*1000, 10)
	base = append(base, `,"level":"`...)
	base = append(base, levels[i%4]...)
	base = append(base, `","service":"svc-`...)
	base = strconv.AppendInt(base, int64(i%7), 10)
	base = append(base, `","message":"request `...)
	base = strconv.AppendInt(base, int64(i), 10)
	base = append(base, ` handled by worker `...)
	base = strconv.AppendInt(base, int64(i%16), 10)
	base = append(base, ` in `...)
	base = strconv.AppendInt(base, int64(i%997), 10)
	base = append(base, ` ms","n":`...)
	base = strconv.AppendInt(base, int64(i), 10)
	base = append(base, `,"pad":"`...)
	pad := size - len(base) - 2
	if pad < 0 {
		pad = 0
	}
	off := i % 26
	base = append(base, filler[off:off+pad]...)
	base = append(base, `"}`...)
	return base
}

func docSize(name string) (int, error) {
	switch name {
	case "small":
		return 200, nil
	case "large":
		return 2048, nil
	}
	return 0, fmt.Errorf("--doc-size must be small or large, not %q", name)
}

func printChecksum() {
	out := "CHECKSUM"
	for _, name := range []string{"small", "large"} {
		size, _ := docSize(name)
		h := crc32.NewIEEE()
		for i := 0; i < 10000; i++ {
			h.Write(Doc(i, size))
			h.Write([]byte{'\n'})
		}
		out += fmt.Sprintf(" %s=%08x", name, h.Sum32())
	}
	fmt.Println(out)
}

// Args is the common command line of every contender.
type Args struct {
	URL      string
	Docs     int
	Size     int
	Workers  int
	Batch    int
	BulkSize int
	Index    string
	// FakeProduct: the server is the null bulk server, which does not say it is
	// Elasticsearch; a client that checks `X-Elastic-Product` is given the header.
	FakeProduct bool
	name        string
	handshake   bool
	stdin       *bufio.Reader
	started     time.Time
}

// Parse reads the command line; with --checksum it prints the checksum line and exits.
func Parse(name string) *Args {
	a := &Args{name: name}
	flag.StringVar(&a.URL, "url", "", "server URL")
	flag.IntVar(&a.Docs, "docs", 100000, "documents to index")
	sizeName := flag.String("doc-size", "small", "small (200 B) or large (2 KiB)")
	flag.IntVar(&a.Workers, "workers", 2, "concurrent bulk requests")
	flag.IntVar(&a.Batch, "batch", 1000, "documents per bulk request")
	flag.IntVar(&a.BulkSize, "bulk-size", 5<<20, "bytes per bulk request at most")
	flag.StringVar(&a.Index, "index", "bench-bulk", "target index")
	flag.BoolVar(&a.FakeProduct, "fake-product-header", false, "add X-Elastic-Product: Elasticsearch to answers that lack it (the null server)")
	flag.BoolVar(&a.handshake, "handshake", false, "print READY, wait for a stdin line, and after the result wait for stdin EOF")
	doChecksum := flag.Bool("checksum", false, "print the CRC-32 of the first 10k documents of each size and exit")
	flag.Parse()
	if *doChecksum {
		printChecksum()
		os.Exit(0)
	}
	if a.URL == "" {
		a.Fail("--url is required")
	}
	size, err := docSize(*sizeName)
	if err != nil {
		a.Fail("%v", err)
	}
	a.Size = size
	a.stdin = bufio.NewReader(os.Stdin)
	return a
}

// Fail prints the reason and exits non-zero.
func (a *Args) Fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, a.name+": "+format+"\n", args...)
	os.Exit(1)
}

// Start says READY, waits for the go line (with --handshake) and starts the clock.
func (a *Args) Start() {
	if a.handshake {
		fmt.Println("BULK-BENCH-READY")
		if _, err := a.stdin.ReadString('\n'); err != nil {
			a.Fail("no go line on stdin: %v", err)
		}
	}
	a.started = time.Now()
}

// Finish stops the clock, prints the result line and (with --handshake) waits
// for stdin to close, so that xtask can read our CPU time and peak RSS.
func (a *Args) Finish(ok int64, failedCalls int64, firstError string) {
	elapsed := time.Since(a.started).Seconds()
	result, _ := json.Marshal(map[string]interface{}{
		"docs":         a.Docs,
		"ok":           ok,
		"failed":       int64(a.Docs) - ok,
		"failed_calls": failedCalls,
		"elapsed":      elapsed,
		"error":        firstError,
	})
	fmt.Printf("BULK-BENCH-RESULT %s\n", result)
	if a.handshake {
		_, _ = io.Copy(io.Discard, a.stdin)
	}
}

// Transport keeps one idle keep-alive connection per worker (and then some;
// http.DefaultTransport keeps only 2 per host), adding the product header when
// told to.
func (a *Args) Transport() http.RoundTripper {
	base := &http.Transport{
		MaxIdleConns:        a.Workers * 2,
		MaxIdleConnsPerHost: a.Workers * 2,
	}
	if !a.FakeProduct {
		return base
	}
	return productHeader{base}
}

type productHeader struct{ next http.RoundTripper }

func (p productHeader) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := p.next.RoundTrip(req)
	if err == nil && resp.Header.Get("X-Elastic-Product") == "" {
		resp.Header.Set("X-Elastic-Product", "Elasticsearch")
	}
	return resp, err
}
