// Command olivere-bulk-bench is the olivere/elastic (v5) BulkProcessor
// contender of `cargo xtask bench bulk`: it indexes the shared benchmark
// documents (see ../README.md) through a BulkProcessor and prints one result
// line. Built offline in GOPATH mode from Debian's packages:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o olivere-bulk-bench .
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	elastic "gopkg.in/olivere/elastic.v5"
)

var levels = [4]string{"INFO", "WARN", "ERROR", "DEBUG"}

var filler = func() string {
	b := make([]byte, 0, 26*90)
	for k := 0; k < 90; k++ {
		b = append(b, "abcdefghijklmnopqrstuvwxyz"...)
	}
	return string(b)
}()

// doc is document i of the shared generator, exactly `size` bytes long.
func doc(i int, size int) []byte {
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

func checksum() {
	out := "CHECKSUM"
	for _, name := range []string{"small", "large"} {
		size, _ := docSize(name)
		h := crc32.NewIEEE()
		for i := 0; i < 10000; i++ {
			h.Write(doc(i, size))
			h.Write([]byte{'\n'})
		}
		out += fmt.Sprintf(" %s=%08x", name, h.Sum32())
	}
	fmt.Println(out)
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "olivere-bulk-bench: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	url := flag.String("url", "", "Elasticsearch URL")
	docs := flag.Int("docs", 100000, "documents to index")
	sizeName := flag.String("doc-size", "small", "small (200 B) or large (2 KiB)")
	workers := flag.Int("workers", 2, "concurrent bulk requests")
	batch := flag.Int("batch", 1000, "documents per bulk request")
	bulkSize := flag.Int("bulk-size", 5<<20, "bytes per bulk request at most")
	index := flag.String("index", "bench-bulk", "target index")
	handshake := flag.Bool("handshake", false, "print READY, wait for a stdin line, and after the result wait for stdin EOF")
	doChecksum := flag.Bool("checksum", false, "print the CRC-32 of the first 10k documents of each size and exit")
	flag.Parse()
	if *doChecksum {
		checksum()
		return
	}
	if *url == "" {
		fail("--url is required")
	}
	size, err := docSize(*sizeName)
	if err != nil {
		fail("%v", err)
	}

	stdin := bufio.NewReader(os.Stdin)
	if *handshake {
		fmt.Println("BULK-BENCH-READY")
		if _, err := stdin.ReadString('\n'); err != nil {
			fail("no go line on stdin: %v", err)
		}
	}
	started := time.Now()

	// One keep-alive connection per worker (http.DefaultClient keeps only 2 idle).
	httpClient := &http.Client{Transport: &http.Transport{
		MaxIdleConns:        *workers * 2,
		MaxIdleConnsPerHost: *workers * 2,
	}}
	// olivere v5 speaks the Elasticsearch 5 API: no sniffing (it reads 5.x
	// node info) and no health check; documents go without a `_type`.
	client, err := elastic.NewClient(
		elastic.SetURL(*url),
		elastic.SetSniff(false),
		elastic.SetHealthcheck(false),
		elastic.SetHttpClient(httpClient),
	)
	if err != nil {
		fail("client: %v", err)
	}
	var failedItems, failedCalls int64
	var firstError atomic.Value
	after := func(_ int64, _ []elastic.BulkableRequest, resp *elastic.BulkResponse, err error) {
		if err != nil {
			atomic.AddInt64(&failedCalls, 1)
			firstError.CompareAndSwap(nil, err.Error())
			return
		}
		if resp != nil {
			for _, item := range resp.Failed() {
				atomic.AddInt64(&failedItems, 1)
				if item.Error != nil {
					firstError.CompareAndSwap(nil, item.Error.Type+": "+item.Error.Reason)
				}
			}
		}
	}
	ctx := context.Background()
	proc, err := client.BulkProcessor().
		Name("bench").
		Workers(*workers).
		BulkActions(*batch).
		BulkSize(*bulkSize).
		Stats(true).
		After(after).
		Do(ctx)
	if err != nil {
		fail("bulk processor: %v", err)
	}
	for i := 0; i < *docs; i++ {
		proc.Add(elastic.NewBulkIndexRequest().
			Index(*index).
			Id(strconv.Itoa(i)).
			Doc(json.RawMessage(doc(i, size))))
	}
	if err := proc.Close(); err != nil {
		fail("close: %v", err)
	}
	elapsed := time.Since(started).Seconds()
	stats := proc.Stats()
	note := ""
	if v := firstError.Load(); v != nil {
		note = v.(string)
	}
	result, _ := json.Marshal(map[string]interface{}{
		"docs":         *docs,
		"ok":           stats.Succeeded,
		"failed":       int64(*docs) - stats.Succeeded,
		"failed_calls": failedCalls,
		"elapsed":      elapsed,
		"error":        note,
	})
	fmt.Printf("BULK-BENCH-RESULT %s\n", result)
	if *handshake {
		_, _ = io.Copy(io.Discard, stdin)
	}
}
