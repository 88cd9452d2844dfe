/* spell-check: which words of the input are not in the template's word list.
 *
 * files:  /data/words.txt, a read-only template file shipped with the template (one word a line)
 * stdin:  plain text; words are runs of ASCII letters, compared lower-cased
 * stdout: one line per unknown word, in input order (each once), then "checked N words, M unknown";
 *         then "read-only: yes (errno E)" when opening the word list for writing failed as it must, and
 *         "create: refused (errno E)" when creating a new file under /data did; "NO" on either line if the
 *         write was allowed (exit 2)
 *
 * No tools: the word list is read through ordinary wasi-libc file APIs (fopen), which work because the
 * executor mounts the template's files read-only at /data.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORD 64
#define MAX_WORDS 65536
#define MAX_UNKNOWN 1024

static char *words[MAX_WORDS];
static size_t nwords;
static char *unknown[MAX_UNKNOWN];
static size_t nunknown;

static int compare(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void load_words(void) {
    FILE *f = fopen("/data/words.txt", "r");
    if (f == NULL) {
        fprintf(stderr, "spell-check: cannot open /data/words.txt: %s\n", strerror(errno));
        exit(1);
    }
    char line[MAX_WORD + 2];
    while (nwords < MAX_WORDS && fgets(line, sizeof line, f) != NULL) {
        size_t n = strcspn(line, "\r\n");
        line[n] = '\0';
        if (n == 0) continue;
        for (size_t i = 0; i < n; i++) line[i] = (char)tolower((unsigned char)line[i]);
        words[nwords++] = strdup(line);
    }
    fclose(f);
    qsort(words, nwords, sizeof words[0], compare);
}

static int known(const char *word) {
    return bsearch(&word, words, nwords, sizeof words[0], compare) != NULL;
}

static void check(const char *word, size_t *checked) {
    (*checked)++;
    if (known(word)) return;
    for (size_t i = 0; i < nunknown; i++)
        if (strcmp(unknown[i], word) == 0) return;
    if (nunknown < MAX_UNKNOWN) unknown[nunknown++] = strdup(word);
    printf("%s\n", word);
}

int main(void) {
    load_words();
    char word[MAX_WORD + 1];
    size_t len = 0, checked = 0;
    int c;
    while ((c = getchar()) != EOF) {
        if (isalpha(c)) {
            if (len < MAX_WORD) word[len++] = (char)tolower(c);
        } else if (len > 0) {
            word[len] = '\0';
            check(word, &checked);
            len = 0;
        }
    }
    if (len > 0) {
        word[len] = '\0';
        check(word, &checked);
    }
    printf("checked %zu words, %zu unknown\n", checked, nunknown);
    FILE *w = fopen("/data/words.txt", "a");
    if (w != NULL) {
        printf("read-only: NO\n");
        return 2;
    }
    printf("read-only: yes (errno %d)\n", errno);
    FILE *created = fopen("/data/new.txt", "w");
    if (created != NULL) {
        printf("create: NO\n");
        return 2;
    }
    printf("create: refused (errno %d)\n", errno);
    return 0;
}
