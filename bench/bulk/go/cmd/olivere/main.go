// Command olivere is the olivere/elastic v7 BulkProcessor contender of
// `cargo xtask bench bulk`: it indexes the shared benchmark documents through a
// BulkProcessor and prints one result line. xtask builds it with `go build`
// (modules from the Go module proxy, pinned by ../../go.sum).
package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync/atomic"

	"bulkbench/internal/gen"

	elastic "github.com/olivere/elastic/v7"
)

func main() {
	a := gen.Parse("olivere")
	a.Start()

	// No sniffing (it would look for other nodes' publish addresses) and no
	// health check loop: one node, known to be up.
	client, err := elastic.NewClient(
		elastic.SetURL(a.URL),
		elastic.SetSniff(false),
		elastic.SetHealthcheck(false),
		elastic.SetHttpClient(&http.Client{Transport: a.Transport()}),
	)
	if err != nil {
		a.Fail("client: %v", err)
	}
	var failedCalls int64
	var firstError atomic.Value
	after := func(_ int64, _ []elastic.BulkableRequest, resp *elastic.BulkResponse, err error) {
		if err != nil {
			atomic.AddInt64(&failedCalls, 1)
			firstError.CompareAndSwap(nil, err.Error())
			return
		}
		if resp != nil {
			for _, item := range resp.Failed() {
				if item.Error != nil {
					firstError.CompareAndSwap(nil, item.Error.Type+": "+item.Error.Reason)
				}
			}
		}
	}
	proc, err := client.BulkProcessor().
		Name("bench").
		Workers(a.Workers).
		BulkActions(a.Batch).
		BulkSize(a.BulkSize).
		Stats(true).
		After(after).
		Do(context.Background())
	if err != nil {
		a.Fail("bulk processor: %v", err)
	}
	for i := 0; i < a.Docs; i++ {
		proc.Add(elastic.NewBulkIndexRequest().
			Index(a.Index).
			Id(strconv.Itoa(i)).
			Doc(json.RawMessage(gen.Doc(i, a.Size))))
	}
	if err := proc.Close(); err != nil {
		a.Fail("close: %v", err)
	}
	note := ""
	if v := firstError.Load(); v != nil {
		note = v.(string)
	}
	a.Finish(proc.Stats().Succeeded, failedCalls, note)
}
