/*
 * histogram.c - see histogram.h. Index of v: v itself below 2^SUB_BITS;
 * above, with m the position of its top bit and s = m - (SUB_BITS - 1),
 * s * 2^(SUB_BITS-1) + (v >> s), where v >> s lies in [2^(SUB_BITS-1), 2^SUB_BITS).
 */
#include "histogram.h"

#include <math.h>
#include <string.h>

#define HALF (1u << (HIST_SUB_BITS - 1))

static unsigned index_of(uint64_t v)
{
    if (v < (1u << HIST_SUB_BITS))
        return (unsigned)v;
    if (v >> HIST_MAX_BITS)
        v = ((uint64_t)1 << HIST_MAX_BITS) - 1;
    unsigned m = 63u - (unsigned)__builtin_clzll(v);
    unsigned s = m - (HIST_SUB_BITS - 1);
    return s * HALF + (unsigned)(v >> s);
}

/* The highest value bucket i holds. */
static uint64_t highest_of(unsigned i)
{
    if (i < (1u << HIST_SUB_BITS))
        return i;
    unsigned s = i / HALF - 1;
    uint64_t sub = i - s * HALF;
    return ((sub + 1) << s) - 1;
}

void hist_init(struct histogram *h)
{
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

void hist_record(struct histogram *h, uint64_t value)
{
    h->bucket[index_of(value)]++;
    h->count++;
    h->sum += (double)value;
    if (value < h->min)
        h->min = value;
    if (value > h->max)
        h->max = value;
}

uint64_t hist_quantile(const struct histogram *h, double q)
{
    if (!h->count)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)h->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = highest_of(i);
            return v > h->max ? h->max : v;
        }
    }
    return h->max;
}

double hist_mean(const struct histogram *h)
{
    return h->count ? h->sum / (double)h->count : 0;
}
