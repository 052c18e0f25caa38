/* Where each value of the configuration file is, for "FILE:LINE: KEY"
 * messages. Jansson, which parses the configuration, keeps no positions;
 * yajl's event parser tells how far into the text each event is, so one
 * pass records the line of every value under its dotted path
 * ("hosts.example.org.modules.roster", "listeners.1.port"). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "core/config.h"
#include "util/strmap.h"

#define MAX_DEPTH 64

typedef struct frame {
    bool array;
    size_t index;     /* next element of an array */
    size_t path_len;  /* path length before this container's members */
} frame;

typedef struct locator {
    yajl_handle h;
    const char *text;
    size_t scanned;   /* bytes whose newlines are counted */
    int line;
    strmap *lines;
    char path[1024];
    size_t path_len;
    frame stack[MAX_DEPTH];
    int depth;
    bool oom;
} locator;

/* The line where the event just parsed ends. */
static int here(locator *l)
{
    size_t at = yajl_get_bytes_consumed(l->h);
    for (; l->scanned < at; l->scanned++)
        if (l->text[l->scanned] == '\n')
            l->line++;
    return l->line;
}

/* Before a value: inside an array it gets its index as path component. */
static void value_path(locator *l)
{
    if (l->depth == 0 || !l->stack[l->depth - 1].array)
        return;
    frame *f = &l->stack[l->depth - 1];
    l->path_len = f->path_len;
    int n = snprintf(l->path + l->path_len, sizeof(l->path) - l->path_len, "%s%zu",
                     l->path_len ? "." : "", f->index++);
    if (n > 0 && (size_t)n < sizeof(l->path) - l->path_len)
        l->path_len += (size_t)n;
    l->path[l->path_len] = '\0';
}

static void record(locator *l, int line)
{
    if (l->depth == 0 && l->path_len == 0)
        return; /* the root */
    if (!strmap_get(l->lines, l->path) &&
        strmap_put(l->lines, l->path, (void *)(intptr_t)line) < 0)
        l->oom = true;
}

static int on_scalar(locator *l)
{
    value_path(l);
    record(l, here(l));
    return !l->oom;
}

static int cb_null(void *ud) { return on_scalar(ud); }
static int cb_bool(void *ud, int b) { return on_scalar(ud); }
static int cb_number(void *ud, const char *s, size_t n) { return on_scalar(ud); }
static int cb_string(void *ud, const unsigned char *s, size_t n) { return on_scalar(ud); }

static int open_container(void *ud, bool array)
{
    locator *l = ud;
    value_path(l);
    record(l, here(l));
    if (l->depth == MAX_DEPTH)
        return 0;
    l->stack[l->depth++] = (frame){ array, 0, l->path_len };
    return !l->oom;
}

static int cb_start_map(void *ud) { return open_container(ud, false); }
static int cb_start_array(void *ud) { return open_container(ud, true); }

/* The parent's next key or element sets the path again. */
static int cb_end(void *ud)
{
    locator *l = ud;
    l->depth--;
    return 1;
}

static int cb_map_key(void *ud, const unsigned char *key, size_t n)
{
    locator *l = ud;
    frame *f = &l->stack[l->depth - 1];
    l->path_len = f->path_len;
    size_t room = sizeof(l->path) - l->path_len;
    int w = snprintf(l->path + l->path_len, room, "%s%.*s", l->path_len ? "." : "", (int)n,
                     (const char *)key);
    if (w > 0 && (size_t)w < room)
        l->path_len += (size_t)w;
    else
        l->path_len = sizeof(l->path) - 1;
    l->path[l->path_len] = '\0';
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = cb_null,
    .yajl_boolean = cb_bool,
    .yajl_number = cb_number,
    .yajl_string = cb_string,
    .yajl_start_map = cb_start_map,
    .yajl_map_key = cb_map_key,
    .yajl_end_map = cb_end,
    .yajl_start_array = cb_start_array,
    .yajl_end_array = cb_end,
};

strmap *config_lines_build(const char *text, size_t len)
{
    locator l = { .text = text, .line = 1, .lines = strmap_new() };
    if (!l.lines || !(l.h = yajl_alloc(&callbacks, NULL, &l))) {
        strmap_free(l.lines);
        return NULL;
    }
    bool ok = yajl_parse(l.h, (const unsigned char *)text, len) == yajl_status_ok &&
              yajl_complete_parse(l.h) == yajl_status_ok && !l.oom;
    yajl_free(l.h);
    if (!ok) {
        strmap_free(l.lines);
        return NULL;
    }
    return l.lines;
}

/* Comments ("//" to the end of the line, and slash-star blocks) become
 * spaces, outside strings: Jansson reads no comments, and blanking keeps
 * every line and column where it was, for messages. An unterminated block
 * comment is left as it is, so the JSON parser reports it. */
void config_strip_comments(char *text, size_t len)
{
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (in_string) {
            if (ch == '\\' && i + 1 < len)
                i++;
            else if (ch == '"')
                in_string = false;
            continue;
        }
        if (ch == '"') {
            in_string = true;
        } else if (ch == '/' && i + 1 < len && text[i + 1] == '/') {
            for (; i < len && text[i] != '\n'; i++)
                text[i] = ' ';
        } else if (ch == '/' && i + 1 < len && text[i + 1] == '*') {
            size_t end = i + 2;
            while (end + 1 < len && !(text[end] == '*' && text[end + 1] == '/'))
                end++;
            if (end + 1 >= len)
                return;
            for (size_t k = i; k <= end + 1; k++)
                if (text[k] != '\n')
                    text[k] = ' ';
            i = end + 1;
        }
    }
}
