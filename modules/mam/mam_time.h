/* XEP-0082 date-time profile: the timestamps of MAM queries (start, end),
 * results (<delay stamp/>) and metadata. Pure functions. */
#ifndef MAM_TIME_H
#define MAM_TIME_H

#include <stddef.h>
#include <stdint.h>

#define MAM_TIME_LEN 32 /* buffer size for mam_time_format */

/* "CCYY-MM-DDThh:mm:ss[.sss...]TZD", TZD "Z" or "+hh:mm"/"-hh:mm", into
 * milliseconds since 1970 (UTC; fractions beyond ms truncated). 0, or -1
 * when s is not such a date-time (also out-of-range fields). */
int mam_time_parse(const char *s, int64_t *ms_r);
/* "CCYY-MM-DDThh:mm:ss.sssZ" of ms into buf (MAM_TIME_LEN bytes). */
void mam_time_format(int64_t ms, char *buf, size_t len);

#endif
