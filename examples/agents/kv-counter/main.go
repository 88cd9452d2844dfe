// kv-counter: a stateful agent step. It counts how many times a key was seen (the count
// survives across runs of the same agent through the kv tool) and, when given a URL,
// fetches it through the http_get tool and reports the body's size.
//
//	stdin:  {"key": "visits"}  or  {"key": "visits", "url": "http://127.0.0.1:18080/x"}
//	stdout: {"key":"visits","count":3,"now_ms":1732170000000,
//	         "url":"http://...","status":"ok","bytes":1234,"fetch_ms":2}
//
// With a URL, "status" is "ok" and "bytes" the body length, or "status" names the tool
// error ("denied", "io", ...). Bad input exits 1 with {"error": "..."}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
)

type input struct {
	Key string `json:"key"`
	URL string `json:"url,omitempty"`
}

type result struct {
	Key     string `json:"key"`
	Count   uint64 `json:"count"`
	NowMs   int64  `json:"now_ms"`
	URL     string `json:"url,omitempty"`
	Status  string `json:"status,omitempty"`
	Bytes   *int32 `json:"bytes,omitempty"`
	FetchMs *int64 `json:"fetch_ms,omitempty"`
}

func fail(code int, msg string) {
	fmt.Fprintf(os.Stderr, "kv-counter: %s\n", msg)
	out, _ := json.Marshal(map[string]string{"error": msg})
	os.Stdout.Write(append(out, '\n'))
	os.Exit(code)
}

func main() {
	raw, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
	if err != nil {
		fail(1, "cannot read input: "+err.Error())
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		fail(1, "input must be a JSON object like {\"key\": \"visits\"}: "+err.Error())
	}
	if in.Key == "" || len(in.Key) > 200 {
		fail(1, "key must be a non-empty string of at most 200 bytes")
	}

	res := result{Key: in.Key, NowMs: afClockNowMs()}
	storeKey := "count/" + in.Key
	prev, ok, code := kvGet(storeKey)
	switch {
	case ok:
		n, err := strconv.ParseUint(string(prev), 10, 64)
		if err != nil {
			logWarn(fmt.Sprintf("kv-counter: stored value %q is not a number; starting again", prev))
		}
		res.Count = n
	case code != errNotFound:
		fail(2, "kv_get failed: "+errName(code))
	}
	res.Count++
	if code := kvPut(storeKey, []byte(strconv.FormatUint(res.Count, 10))); code != 0 {
		fail(2, "kv_put failed: "+errName(code))
	}

	if in.URL != "" {
		res.URL = in.URL
		start := afClockNowMs()
		_, n := httpGet(in.URL)
		elapsed := afClockNowMs() - start
		res.FetchMs = &elapsed
		if n >= 0 {
			res.Status = "ok"
			res.Bytes = &n
		} else {
			res.Status = errName(n)
			logWarn(fmt.Sprintf("kv-counter: http_get %s failed: %s (%d)", in.URL, res.Status, n))
		}
	}

	out, _ := json.Marshal(res)
	os.Stdout.Write(append(out, '\n'))
	logInfo(fmt.Sprintf("kv-counter: %s = %d", in.Key, res.Count))
}
