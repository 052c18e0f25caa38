/* String-keyed hash map (open addressing, linear probing). Keys are copied
 * and owned by the map; values are the caller's. Not thread-safe. */
#ifndef XMPPD_STRMAP_H
#define XMPPD_STRMAP_H

#include <stddef.h>

typedef struct strmap strmap;

strmap *strmap_new(void);
/* Frees the map and its keys; values are not touched. */
void strmap_free(strmap *m);
void *strmap_get(const strmap *m, const char *key);
/* Inserts or replaces. 0, or -1 on OOM. */
int strmap_put(strmap *m, const char *key, void *value);
/* Removes key; returns its value or NULL. */
void *strmap_del(strmap *m, const char *key);
size_t strmap_count(const strmap *m);
/* Calls fn for each entry; the map must not change during the walk.
 * Stops early when fn returns nonzero. */
void strmap_foreach(const strmap *m, int (*fn)(const char *key, void *value, void *ud), void *ud);

#endif
