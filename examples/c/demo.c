/* demo.c - herd from C: every rank submits the same named gradients in its own random order,
 * waits on them in another order, and checks every element against the exact expected value.
 *
 *   mpirun -np 4 ./herd_demo [tensors] [steps]
 */
#include <herd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* xorshift32: the same sequence on every platform, unlike rand(). */
static unsigned next_rand(unsigned *s)
{
    unsigned x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

static void shuffle(int *v, int n, unsigned *seed)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(next_rand(seed) % (unsigned)(i + 1));
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static int die(const char *what, int rc)
{
    fprintf(stderr, "rank %d: %s failed: %s (%s)\n", herd_rank(), what, herd_status_name(rc),
            herd_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    int ntensors = argc > 1 ? atoi(argv[1]) : 200;
    int steps = argc > 2 ? atoi(argv[2]) : 5;
    int rc = herd_init();
    if (rc != HERD_OK)
        return die("herd_init", rc);
    int rank = herd_rank(), size = herd_size();
    unsigned seed = 12345u + (unsigned)rank * 7919u;

    /* Tensor sizes are agreed from a shared seed; contents differ per rank. */
    unsigned shared = 42u;
    int64_t *counts = malloc(sizeof *counts * (size_t)ntensors);
    int32_t **send = malloc(sizeof *send * (size_t)ntensors);
    int32_t **recv = malloc(sizeof *recv * (size_t)ntensors);
    herd_handle_t *handles = malloc(sizeof *handles * (size_t)ntensors);
    int *order = malloc(sizeof *order * (size_t)ntensors);
    for (int i = 0; i < ntensors; i++) {
        counts[i] = 1 + next_rand(&shared) % 50000;
        send[i] = malloc(sizeof(int32_t) * (size_t)counts[i]);
        recv[i] = malloc(sizeof(int32_t) * (size_t)counts[i]);
        order[i] = i;
    }
    long long bad = 0, checked = 0;
    for (int step = 0; step < steps; step++) {
        for (int i = 0; i < ntensors; i++)
            for (int64_t k = 0; k < counts[i]; k++)
                send[i][k] = (int32_t)((rank + 1) * (k + i + step));
        shuffle(order, ntensors, &seed);
        for (int j = 0; j < ntensors; j++) {
            int i = order[j];
            char name[64];
            snprintf(name, sizeof name, "grad.%d", i);
            rc = herd_push_pull(name, send[i], recv[i], counts[i], HERD_INT32, HERD_SUM,
                                HERD_DEVICE_CPU, &handles[i]);
            if (rc != HERD_OK)
                return die("herd_push_pull", rc);
        }
        shuffle(order, ntensors, &seed);
        for (int j = 0; j < ntensors; j++) {
            rc = herd_wait_handle(handles[order[j]], -1);
            if (rc != HERD_OK)
                return die("herd_wait_handle", rc);
        }
        /* sum over ranks r of (r+1)*(k+i+step) = (k+i+step) * size*(size+1)/2 */
        for (int i = 0; i < ntensors; i++)
            for (int64_t k = 0; k < counts[i]; k++, checked++)
                bad += recv[i][k] != (int32_t)((k + i + step) * size * (size + 1) / 2);
    }
    if (rank == 0)
        printf("herd demo: %d ranks, %d tensors x %d steps, %lld elements checked, %lld wrong\n",
               size, ntensors, steps, checked, bad);
    for (int i = 0; i < ntensors; i++) {
        free(send[i]);
        free(recv[i]);
    }
    free(counts);
    free(send);
    free(recv);
    free(handles);
    free(order);
    rc = herd_shutdown();
    if (rc != HERD_OK)
        return die("herd_shutdown", rc);
    return bad == 0 ? 0 : 1;
}
