/* Agent Factory tool imports for C agents (see docs/tools-abi.md).
 *
 * Every function is a host import from module "agentfactory". Import only what the
 * template's "tools" grant: a module that imports an ungranted function is refused
 * before it runs. Pointers are offsets into the module's own linear memory.
 */
#ifndef AGENTFACTORY_H
#define AGENTFACTORY_H

#include <stdint.h>

#define AF_ERR_NOT_FOUND (-1)
#define AF_ERR_DENIED (-2)
#define AF_ERR_BOUNDS (-3)
#define AF_ERR_TOO_LARGE (-4)
#define AF_ERR_IO (-5)
#define AF_ERR_INVALID (-6)

#define AF_LOG_INFO 0
#define AF_LOG_WARN 1
#define AF_LOG_ERROR 2

#define AF_IMPORT(name) __attribute__((import_module("agentfactory"), import_name(name)))

/* tool "log" */
AF_IMPORT("log") int32_t af_log(int32_t level, const char *msg, uint32_t len);
/* tool "kv" */
AF_IMPORT("kv_get") int32_t af_kv_get(const char *key, uint32_t key_len, void *buf, uint32_t cap);
AF_IMPORT("kv_put") int32_t af_kv_put(const char *key, uint32_t key_len, const void *val, uint32_t val_len);
/* tool "clock" */
AF_IMPORT("clock_now_ms") int64_t af_clock_now_ms(void);
/* tool "random" */
AF_IMPORT("random_fill") int32_t af_random_fill(void *buf, uint32_t len);
/* tool "http_get" */
AF_IMPORT("http_get") int32_t af_http_get(const char *url, uint32_t url_len, void *buf, uint32_t cap);

#endif
