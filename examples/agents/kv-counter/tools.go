package main

// Agent Factory tool imports (docs/tools-abi.md). The executor links only the tools the
// signed template grants; this agent's template grants kv, clock, log and http_get.

import "unsafe"

const (
	errNotFound = -1
	errDenied   = -2
	errBounds   = -3
	errTooLarge = -4
	errIO       = -5
	errInvalid  = -6
)

//go:wasmimport agentfactory log
func afLog(level int32, msg unsafe.Pointer, msgLen uint32) int32

//go:wasmimport agentfactory kv_get
func afKVGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, bufCap uint32) int32

//go:wasmimport agentfactory kv_put
func afKVPut(key unsafe.Pointer, keyLen uint32, val unsafe.Pointer, valLen uint32) int32

//go:wasmimport agentfactory clock_now_ms
func afClockNowMs() int64

//go:wasmimport agentfactory http_get
func afHTTPGet(url unsafe.Pointer, urlLen uint32, buf unsafe.Pointer, bufCap uint32) int32

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func logInfo(msg string) { afLog(0, ptr([]byte(msg)), uint32(len(msg))) }
func logWarn(msg string) { afLog(1, ptr([]byte(msg)), uint32(len(msg))) }

// kvGet returns the stored value, or ok=false when the key is absent.
func kvGet(key string) (val []byte, ok bool, code int32) {
	k := []byte(key)
	buf := make([]byte, 256)
	for {
		n := afKVGet(ptr(k), uint32(len(k)), ptr(buf), uint32(len(buf)))
		if n < 0 { // errNotFound when the key was never stored
			return nil, false, n
		}
		if int(n) <= len(buf) {
			return buf[:n], true, n
		}
		buf = make([]byte, n) // the value was longer than the buffer: ask again
	}
}

func kvPut(key string, val []byte) int32 {
	k := []byte(key)
	return afKVPut(ptr(k), uint32(len(k)), ptr(val), uint32(len(val)))
}

// httpGet fetches url into a 64 KiB buffer; it returns the full body length (which may be
// larger than what was copied) or a negative tool error.
func httpGet(url string) (body []byte, length int32) {
	u := []byte(url)
	buf := make([]byte, 64<<10)
	n := afHTTPGet(ptr(u), uint32(len(u)), ptr(buf), uint32(len(buf)))
	if n < 0 {
		return nil, n
	}
	return buf[:min(int(n), len(buf))], n
}

func errName(code int32) string {
	switch code {
	case errNotFound:
		return "not_found"
	case errDenied:
		return "denied"
	case errBounds:
		return "bounds"
	case errTooLarge:
		return "too_large"
	case errIO:
		return "io"
	case errInvalid:
		return "invalid"
	}
	return "unknown"
}
