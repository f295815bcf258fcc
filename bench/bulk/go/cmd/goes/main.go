// Command goes is the go-elasticsearch esutil.BulkIndexer contender of
// `cargo xtask bench bulk`: it indexes the shared benchmark documents through a
// BulkIndexer and prints one result line. xtask builds it with `go build`
// (modules from the Go module proxy, pinned by ../../go.sum).
package main

import (
	"bytes"
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"bulkbench/internal/gen"

	elasticsearch "github.com/elastic/go-elasticsearch/v9"
	"github.com/elastic/go-elasticsearch/v9/esutil"
)

func main() {
	a := gen.Parse("goes")
	a.Start()

	client, err := elasticsearch.NewClient(elasticsearch.Config{
		Addresses: []string{a.URL},
		Transport: a.Transport(),
	})
	if err != nil {
		a.Fail("client: %v", err)
	}
	var firstError atomic.Value
	var failedCalls int64
	indexer, err := esutil.NewBulkIndexer(esutil.BulkIndexerConfig{
		Client:     client,
		Index:      a.Index,
		NumWorkers: a.Workers,
		FlushBytes: flushBytes(a),
		// Only the end of the input flushes early.
		FlushInterval: time.Hour,
		OnError: func(_ context.Context, err error) {
			atomic.AddInt64(&failedCalls, 1)
			firstError.CompareAndSwap(nil, err.Error())
		},
	})
	if err != nil {
		a.Fail("bulk indexer: %v", err)
	}
	onFailure := func(_ context.Context, _ esutil.BulkIndexerItem, res esutil.BulkIndexerResponseItem, err error) {
		if err != nil {
			firstError.CompareAndSwap(nil, err.Error())
		} else {
			firstError.CompareAndSwap(nil, res.Error.Type+": "+res.Error.Reason)
		}
	}
	ctx := context.Background()
	for i := 0; i < a.Docs; i++ {
		err := indexer.Add(ctx, esutil.BulkIndexerItem{
			Action:     "index",
			DocumentID: strconv.Itoa(i),
			Body:       bytes.NewReader(gen.Doc(i, a.Size)),
			OnFailure:  onFailure,
		})
		if err != nil {
			a.Fail("add: %v", err)
		}
	}
	if err := indexer.Close(ctx); err != nil {
		a.Fail("close: %v", err)
	}
	note := ""
	if v := firstError.Load(); v != nil {
		note = v.(string)
	}
	a.Finish(int64(indexer.Stats().NumFlushed), failedCalls, note)
}

// flushBytes makes the BulkIndexer, which cuts batches by bytes only, send
// --batch documents per request: a worker flushes before an item that would
// reach the threshold, so batch items of the longest id's size plus one byte
// hold exactly --batch documents (a few more where ids are shorter), capped
// by --bulk-size.
func flushBytes(a *gen.Args) int {
	id := strconv.Itoa(a.Docs - 1)
	// {"index":{"_id":"<id>"}}\n<doc>\n
	item := len(`{"index":{"_id":""}}`) + len(id) + 1 + a.Size + 1
	if n := a.Batch*item + 1; n < a.BulkSize {
		return n
	}
	return a.BulkSize
}
