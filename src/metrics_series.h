/*
 * metrics_series.h - the exposition of /metrics: the built-in luaecho_
 * series of every worker (read from each loop's stats.h counters, which
 * no scrape locks or waits for), the process_ series Prometheus client
 * libraries export, then the script's own (script_metrics.h).
 */
#ifndef LUAECHO_METRICS_SERIES_H
#define LUAECHO_METRICS_SERIES_H

#include "text_buf.h"

struct workers;

void metrics_series_render(struct text_buf *out, struct workers *g);

#endif
