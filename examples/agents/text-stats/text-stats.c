/* text-stats: word, line and character counts of a text, plus its most frequent word.
 *
 * stdin:  {"text": "..."}            (other keys are ignored)
 * stdout: {"words":N,"lines":N,"chars":N,"top_word":"..."}
 * tools:  log (one summary line per run)
 *
 * words    whitespace-separated tokens (like wc -w)
 * lines    0 for an empty text, else the number of newlines, plus one when the text does
 *          not end with a newline ("a\nb" has 2 lines, "a\n" has 1)
 * chars    Unicode code points
 * top_word the most frequent word, lower-cased (ASCII) with leading and trailing ASCII
 *          punctuation removed; ties go to the word seen first; "" when there is none
 *
 * Bad input (not a JSON object, no "text" string, invalid UTF-8) exits 1 with
 * {"error":"..."} on stdout and the reason on stderr.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentfactory.h"

#define MAX_INPUT (4u << 20)
#define MAX_DEPTH 64

static void put_json_string(const char *s, size_t n);

static void fail(const char *why) {
    fprintf(stderr, "text-stats: %s\n", why);
    printf("{\"error\":");
    put_json_string(why, strlen(why));
    printf("}\n");
    exit(1);
}

/* ---- input --------------------------------------------------------------------------- */

static char *read_all(size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) fail("out of memory");
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_INPUT) fail("input too large");
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf) fail("out of memory");
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
    }
    *len = n;
    return buf;
}

/* ---- a small JSON reader: finds the top-level "text" string --------------------------- */

typedef struct {
    const char *p, *end;
} cursor;

static void ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

static int hex4(cursor *c, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        if (c->p >= c->end) return 0;
        char ch = *c->p++;
        v <<= 4;
        if (ch >= '0' && ch <= '9') v |= (uint32_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f') v |= (uint32_t)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F') v |= (uint32_t)(ch - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parses a JSON string at c->p. If out is non-NULL the decoded bytes are written there
 * (the decoded form is never longer than the encoded one). Returns the decoded length or -1. */
static long string(cursor *c, char *out) {
    if (c->p >= c->end || *c->p != '"') return -1;
    c->p++;
    size_t n = 0;
    char tmp[4];
    while (c->p < c->end) {
        unsigned char ch = (unsigned char)*c->p++;
        if (ch == '"') return (long)n;
        if (ch < 0x20) return -1;
        if (ch != '\\') {
            if (out) out[n] = (char)ch;
            n++;
            continue;
        }
        if (c->p >= c->end) return -1;
        char e = *c->p++;
        uint32_t cp;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (!hex4(c, &cp)) return -1;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                cursor save = *c;
                if (c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u' && (c->p += 2, hex4(c, &lo)) &&
                    lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    *c = save;
                    cp = 0xFFFD; /* lone surrogate */
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            break;
        default: return -1;
        }
        size_t k = put_utf8(out ? out + n : tmp, cp);
        n += k;
    }
    return -1;
}

static int skip_value(cursor *c, int depth);

static int skip_container(cursor *c, char close, int depth, int is_object) {
    c->p++;
    ws(c);
    if (c->p < c->end && *c->p == close) { c->p++; return 1; }
    for (;;) {
        ws(c);
        if (is_object) {
            if (string(c, NULL) < 0) return 0;
            ws(c);
            if (c->p >= c->end || *c->p++ != ':') return 0;
        }
        if (!skip_value(c, depth + 1)) return 0;
        ws(c);
        if (c->p >= c->end) return 0;
        char ch = *c->p++;
        if (ch == close) return 1;
        if (ch != ',') return 0;
    }
}

static int skip_value(cursor *c, int depth) {
    if (depth > MAX_DEPTH) return 0;
    ws(c);
    if (c->p >= c->end) return 0;
    switch (*c->p) {
    case '"': return string(c, NULL) >= 0;
    case '{': return skip_container(c, '}', depth, 1);
    case '[': return skip_container(c, ']', depth, 0);
    default: {
        const char *start = c->p;
        while (c->p < c->end && (strchr("+-.0123456789eE", *c->p) || (*c->p >= 'a' && *c->p <= 'z'))) c->p++;
        return c->p > start;
    }
    }
}

/* Returns a malloc'd copy of the decoded "text" member and its length, or fails. */
static char *find_text(const char *json, size_t len, size_t *text_len) {
    cursor c = {json, json + len};
    char *text = NULL;
    ws(&c);
    if (c.p >= c.end || *c.p != '{') fail("input must be a JSON object like {\"text\": \"...\"}");
    c.p++;
    ws(&c);
    if (c.p < c.end && *c.p == '}') fail("missing \"text\" string");
    for (;;) {
        ws(&c);
        cursor key_at = c;
        long klen = string(&c, NULL);
        if (klen < 0) fail("malformed JSON");
        int is_text = klen == 4 && memcmp(key_at.p, "\"text\"", 6) == 0;
        ws(&c);
        if (c.p >= c.end || *c.p++ != ':') fail("malformed JSON");
        ws(&c);
        if (is_text) {
            if (c.p >= c.end || *c.p != '"') fail("\"text\" must be a string");
            free(text); /* a repeated key: the last one wins */
            text = malloc((size_t)(c.end - c.p) + 1); /* decoding never makes a string longer */
            if (!text) fail("out of memory");
            long n = string(&c, text);
            if (n < 0) fail("malformed JSON");
            text[n] = 0;
            *text_len = (size_t)n;
        } else if (!skip_value(&c, 1)) {
            fail("malformed JSON");
        }
        ws(&c);
        if (c.p >= c.end) fail("malformed JSON");
        char ch = *c.p++;
        if (ch == '}') break;
        if (ch != ',') fail("malformed JSON");
    }
    ws(&c);
    if (c.p != c.end) fail("trailing data after the JSON object");
    if (!text) fail("missing \"text\" string");
    return text;
}

static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        size_t k;
        uint32_t min;
        if (b < 0x80) { i++; continue; }
        if ((b & 0xE0) == 0xC0) { k = 1; min = 0x80; }
        else if ((b & 0xF0) == 0xE0) { k = 2; min = 0x800; }
        else if ((b & 0xF8) == 0xF0) { k = 3; min = 0x10000; }
        else return 0;
        if (i + k >= n) return 0;
        uint32_t cp = b & (0x3F >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

/* ---- counting ---------------------------------------------------------------------- */

typedef struct {
    const char *word; /* NULL = empty slot */
    size_t len;
    size_t count;
    size_t first;
} entry;

static int is_space(unsigned char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r'); }
static int is_punct(unsigned char ch) { return ch < 0x80 && !((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') && !(ch >= '0' && ch <= '9'); }

static uint32_t hash(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static entry *lookup(entry *table, size_t cap, const char *w, size_t len) {
    size_t slot = hash(w, len) & (cap - 1);
    while (table[slot].word && !(table[slot].len == len && memcmp(table[slot].word, w, len) == 0))
        slot = (slot + 1) & (cap - 1);
    return &table[slot];
}

/* Doubles the table; *best is re-pointed into the new one. */
static entry *grow(entry *old, size_t *cap, const entry **best) {
    size_t new_cap = *cap * 2;
    entry *table = calloc(new_cap, sizeof *table);
    if (!table) fail("out of memory");
    for (size_t i = 0; i < *cap; i++) {
        if (!old[i].word) continue;
        entry *e = lookup(table, new_cap, old[i].word, old[i].len);
        *e = old[i];
        if (*best == &old[i]) *best = e;
    }
    free(old);
    *cap = new_cap;
    return table;
}

static void put_json_string(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

int main(void) {
    size_t in_len, n;
    char *input = read_all(&in_len);
    char *text = find_text(input, in_len, &n);
    free(input);
    if (!valid_utf8((const unsigned char *)text, n)) fail("text is not valid UTF-8");

    size_t chars = 0, newlines = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)text[i] & 0xC0) != 0x80) chars++;
        if (text[i] == '\n') newlines++;
    }
    size_t lines = n == 0 ? 0 : newlines + (text[n - 1] != '\n');

    /* Lower-case in place (ASCII only), then split on whitespace. */
    size_t cap = 1024, distinct = 0;
    entry *table = calloc(cap, sizeof *table);
    if (!table) fail("out of memory");
    size_t words = 0;
    const entry *best = NULL;
    for (size_t i = 0; i < n;) {
        while (i < n && is_space((unsigned char)text[i])) i++;
        if (i >= n) break;
        size_t start = i;
        while (i < n && !is_space((unsigned char)text[i])) {
            if (text[i] >= 'A' && text[i] <= 'Z') text[i] = (char)(text[i] + 32);
            i++;
        }
        words++;
        size_t a = start, b = i;
        while (a < b && is_punct((unsigned char)text[a])) a++;
        while (b > a && is_punct((unsigned char)text[b - 1])) b--;
        if (a == b) continue;
        if (2 * (distinct + 1) > cap) table = grow(table, &cap, &best);
        entry *e = lookup(table, cap, text + a, b - a);
        if (!e->word) {
            *e = (entry){text + a, b - a, 0, words};
            distinct++;
        }
        e->count++;
        if (!best || e->count > best->count || (e->count == best->count && e->first < best->first)) best = e;
    }

    const char *top = best ? best->word : "";
    size_t top_len = best ? best->len : 0;
    printf("{\"words\":%zu,\"lines\":%zu,\"chars\":%zu,\"top_word\":", words, lines, chars);
    put_json_string(top, top_len);
    printf("}\n");

    /* Quote at most 200 bytes of the top word, cut on a UTF-8 character boundary. */
    size_t shown = top_len;
    if (shown > 200) {
        shown = 200;
        while (shown > 0 && ((unsigned char)top[shown] & 0xC0) == 0x80) shown--;
    }
    char msg[512];
    int m = snprintf(msg, sizeof msg, "text-stats: %zu words, %zu lines, %zu chars; top word \"%.*s\" (%zu times)",
                     words, lines, chars, (int)shown, top, best ? best->count : 0);
    if (m > (int)sizeof msg - 1) m = (int)sizeof msg - 1;
    af_log(AF_LOG_INFO, msg, (uint32_t)m);
    return 0;
}
