/* timeline.c - see timeline.h. The JSON writer is hand-written: a dozen fixed fields per event,
 * nothing a general JSON library would add. */
#include "timeline.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "log.h"
#include "status.h"
#include "util/clock.h"
#include "util/thread.h"

enum { RING_SIZE = 1 << 16, WRITER_PERIOD_NS = 20 * 1000 * 1000 };

typedef struct tl_event {
    int phase;
    int64_t key, start_ns, end_ns, a, b;
    const char *name;
} tl_event_t;

struct herd_timeline {
    FILE *file;
    int rank;
    int64_t origin_ns;
    tl_event_t *ring;
    atomic_uint_fast64_t head; /* next slot the producer writes */
    atomic_uint_fast64_t tail; /* next slot the writer reads */
    atomic_int_fast64_t dropped;
    atomic_int stop;
    pthread_t writer;
    pthread_mutex_t lock; /* for the writer's timed sleep only */
    pthread_cond_t cond;
    int first_written;     /* writer only: a comma goes before every event but the first */
    uint8_t *named;        /* writer only: row already has its thread_name metadata */
    int64_t named_cap;
};

static const char *const phase_names[HERD_TL_NUM_PHASES] = {
    "QUEUED", "NEGOTIATE", "PACK", "ALLREDUCE", "BROADCAST", "UNPACK", "ALLGATHER",
    "REDUCESCATTER", "ALLTOALL", "BARRIER", "JOIN", "READY"};

/* Writes `s` as JSON string content. Tensor names are user text. */
static void put_json_string(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
}

static void begin_event(herd_timeline_t *tl)
{
    fputs(tl->first_written ? ",\n" : "\n", tl->file);
    tl->first_written = 1;
}

static void name_row(herd_timeline_t *tl, const tl_event_t *e)
{
    if (e->key < 0)
        return;
    if (e->key >= tl->named_cap) {
        int64_t cap = tl->named_cap ? tl->named_cap : 1024;
        while (cap <= e->key)
            cap *= 2;
        uint8_t *p = realloc(tl->named, (size_t)cap);
        if (p == NULL)
            return;
        memset(p + tl->named_cap, 0, (size_t)(cap - tl->named_cap));
        tl->named = p;
        tl->named_cap = cap;
    }
    if (tl->named[e->key])
        return;
    tl->named[e->key] = 1;
    begin_event(tl);
    fprintf(tl->file, "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":%lld,"
            "\"args\":{\"name\":\"", tl->rank, (long long)e->key);
    put_json_string(tl->file, e->name);
    fputs("\"}}", tl->file);
}

static void write_event(herd_timeline_t *tl, const tl_event_t *e)
{
    name_row(tl, e);
    begin_event(tl);
    double ts = (double)(e->start_ns - tl->origin_ns) / 1000.0;
    FILE *f = tl->file;
    if (e->phase == HERD_TL_MARK) {
        fprintf(f, "{\"name\":\"%s\",\"ph\":\"i\",\"s\":\"t\",\"pid\":%d,\"tid\":%lld,"
                "\"ts\":%.3f,\"args\":{\"rank\":%lld}}", phase_names[e->phase], tl->rank,
                (long long)e->key, ts, (long long)e->a);
        return;
    }
    double dur = (double)(e->end_ns - e->start_ns) / 1000.0;
    fprintf(f, "{\"name\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":%lld,\"ts\":%.3f,"
            "\"dur\":%.3f", phase_names[e->phase], tl->rank, (long long)e->key, ts, dur);
    if (e->phase >= HERD_TL_PACK)
        fprintf(f, ",\"args\":{\"group_tensors\":%lld,\"group_bytes\":%lld}",
                (long long)e->a, (long long)e->b);
    fputc('}', f);
}

static void drain(herd_timeline_t *tl)
{
    uint64_t tail = atomic_load(&tl->tail);
    uint64_t head = atomic_load_explicit(&tl->head, memory_order_acquire);
    for (; tail != head; tail++)
        write_event(tl, &tl->ring[tail % RING_SIZE]);
    atomic_store_explicit(&tl->tail, tail, memory_order_release);
    fflush(tl->file);
}

static void *writer_main(void *arg)
{
    herd_timeline_t *tl = arg;
    while (!atomic_load(&tl->stop)) {
        drain(tl);
        herd__mutex_lock(&tl->lock);
        if (!atomic_load(&tl->stop))
            herd__cond_wait_until(&tl->cond, &tl->lock, herd__clock_ns() + WRITER_PERIOD_NS);
        herd__mutex_unlock(&tl->lock);
    }
    drain(tl);
    return NULL;
}

static int expand_path(char *out, size_t cap, const char *pattern, int rank)
{
    size_t len = 0;
    for (const char *p = pattern; *p; p++) {
        int w;
        if (p[0] == '%' && p[1] == 'r') {
            w = snprintf(out + len, cap - len, "%d", rank);
            p++;
        } else {
            w = snprintf(out + len, cap - len, "%c", *p);
        }
        if (w < 0 || (size_t)w >= cap - len)
            return -1;
        len += (size_t)w;
    }
    return 0;
}

int herd__timeline_open(herd_timeline_t **out, const char *path_pattern, int rank)
{
    *out = NULL;
    if (path_pattern == NULL || path_pattern[0] == '\0')
        return HERD_OK;
    if (strstr(path_pattern, "%r") == NULL && rank != 0)
        return HERD_OK;
    char path[4096];
    if (expand_path(path, sizeof path, path_pattern, rank) != 0)
        return herd__status_set(HERD_ERR_INVALID_ARG, "HERD_TIMELINE path is too long");
    herd_timeline_t *tl = calloc(1, sizeof *tl);
    if (tl == NULL)
        return herd__status_set(HERD_ERR_NO_MEMORY, "cannot allocate the timeline");
    tl->ring = calloc(RING_SIZE, sizeof *tl->ring);
    tl->file = fopen(path, "w");
    if (tl->ring == NULL || tl->file == NULL) {
        int err = errno;
        if (tl->file)
            fclose(tl->file);
        free(tl->ring);
        free(tl);
        return herd__status_set(HERD_ERR_INVALID_ARG, "HERD_TIMELINE: cannot write '%s': %s",
                                path, strerror(err));
    }
    tl->rank = rank;
    tl->origin_ns = herd__clock_ns();
    atomic_init(&tl->head, 0);
    atomic_init(&tl->tail, 0);
    atomic_init(&tl->dropped, 0);
    atomic_init(&tl->stop, 0);
    herd__mutex_init(&tl->lock);
    herd__cond_init_monotonic(&tl->cond);
    fprintf(tl->file, "[");
    begin_event(tl);
    fprintf(tl->file, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,"
            "\"args\":{\"name\":\"herd rank %d\"}}", rank, rank);
    if (herd__thread_start(&tl->writer, "herd-timeline", writer_main, tl) != 0) {
        fclose(tl->file);
        herd__cond_destroy(&tl->cond);
        herd__mutex_destroy(&tl->lock);
        free(tl->ring);
        free(tl);
        return herd__status_set(HERD_ERR_INTERNAL, "cannot start the timeline writer");
    }
    *out = tl;
    return HERD_OK;
}

void herd__timeline_event(herd_timeline_t *tl, int phase, int64_t key, const char *name,
                          int64_t start_ns, int64_t end_ns, int64_t a, int64_t b)
{
    uint64_t head = atomic_load_explicit(&tl->head, memory_order_relaxed);
    if (head - atomic_load_explicit(&tl->tail, memory_order_acquire) >= RING_SIZE) {
        atomic_fetch_add(&tl->dropped, 1);
        return;
    }
    tl->ring[head % RING_SIZE] = (tl_event_t){.phase = phase, .key = key, .name = name,
                                              .start_ns = start_ns, .end_ns = end_ns, .a = a,
                                              .b = b};
    atomic_store_explicit(&tl->head, head + 1, memory_order_release);
}

int64_t herd__timeline_dropped(herd_timeline_t *tl)
{
    return atomic_load(&tl->dropped);
}

void herd__timeline_close(herd_timeline_t *tl)
{
    if (tl == NULL)
        return;
    herd__mutex_lock(&tl->lock);
    atomic_store(&tl->stop, 1);
    herd__cond_signal(&tl->cond);
    herd__mutex_unlock(&tl->lock);
    herd__thread_join(tl->writer);
    int64_t dropped = atomic_load(&tl->dropped);
    begin_event(tl);
    fprintf(tl->file, "{\"name\":\"herd_timeline_end\",\"ph\":\"M\",\"pid\":%d,"
            "\"args\":{\"dropped_events\":%lld}}\n]\n", tl->rank, (long long)dropped);
    fclose(tl->file);
    if (dropped > 0)
        HERD_LOG_WRN("timeline: %lld events dropped (the writer could not keep up)",
                     (long long)dropped);
    herd__cond_destroy(&tl->cond);
    herd__mutex_destroy(&tl->lock);
    free(tl->named);
    free(tl->ring);
    free(tl);
}
