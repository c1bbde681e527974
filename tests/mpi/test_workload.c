/* test_workload.c - a real model's gradient step: ResNet-50's 161 parameter tensors (25.6 M
 * float32, tests/data/resnet50.txt, given as the first argument). Every tensor is declared in
 * forward order (the reverse of the file), submitted in file order (the order backward produces
 * gradients) as an in-place float32 AVERAGE, and every result is checked exactly; two steps.
 *
 * Values: rank r contributes a(k, i, step) + r with a small integer a, so every partial sum is
 * an exact small integer and the mean a + (size - 1) / 2 is exact in float32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "mpi_test.h"

enum { MAX_TENSORS = 1024, STEPS = 2 };

typedef struct tensor {
    char name[256];
    int64_t numel;
    float *buf;
    herd_handle_t handle;
} tensor_t;

static tensor_t tensors[MAX_TENSORS];
static int ntensors;

/* a(k, i, step) in [-3, 3]: cheap, varies along the tensor and between steps. */
static int base_value(int k, int64_t i, int step)
{
    return (int)((i + k * 3 + step * 5) % 7) - 3;
}

static int load(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "[rank %d] cannot open workload '%s'\n", mt_rank, path);
        return -1;
    }
    char line[512];
    ntensors = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *tab = strchr(line, '\t');
        if (tab == NULL || ntensors == MAX_TENSORS)
            break;
        *tab = '\0';
        tensor_t *t = &tensors[ntensors++];
        snprintf(t->name, sizeof t->name, "%.*s", (int)sizeof t->name - 1, line);
        t->numel = strtoll(tab + 1, NULL, 10);
    }
    fclose(f);
    return ntensors;
}

static void test_resnet50_steps(void)
{
    const char *path = mt_argc > 0 ? mt_argv[0] : "resnet50.txt";
    int n = load(path);
    MT_CHECK(n == 161);
    if (n <= 0)
        return;
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        MT_CHECK(tensors[k].numel > 0);
        total += tensors[k].numel;
        tensors[k].buf = mt_alloc((size_t)tensors[k].numel * sizeof(float));
    }
    MT_CHECK(total == 25557032);

    /* Forward order: the last line first. Keys come out increasing. */
    int64_t prev = -1;
    for (int k = n - 1; k >= 0; k--) {
        int64_t key = -1;
        MT_CHECK_STATUS(herd_declare_tensor(tensors[k].name, &key), HERD_OK);
        MT_CHECK(key > prev);
        prev = key;
    }

    for (int step = 0; step < STEPS; step++) {
        for (int k = 0; k < n; k++) {
            float *b = tensors[k].buf;
            for (int64_t i = 0; i < tensors[k].numel; i++)
                b[i] = (float)(base_value(k, i, step) + mt_rank);
        }
        for (int k = 0; k < n; k++) {
            tensor_t *t = &tensors[k];
            MT_CHECK_STATUS(herd_push_pull(t->name, t->buf, t->buf, t->numel, HERD_FLOAT32,
                                           HERD_AVERAGE, HERD_DEVICE_CPU, &t->handle),
                            HERD_OK);
        }
        /* Wait in file order too: the first gradients are needed first by the optimizer. */
        int64_t wrong = 0;
        for (int k = 0; k < n; k++) {
            tensor_t *t = &tensors[k];
            MT_CHECK_STATUS(mt_wait(t->handle, t->name), HERD_OK);
            const float half = (float)(mt_size - 1) / 2.0f; /* exact: 0, 0.5, 1 or 1.5 */
            int64_t bad = 0;
            for (int64_t i = 0; i < t->numel; i++) {
                float want = (float)base_value(k, i, step) + half;
                if (t->buf[i] != want) {
                    if (bad < 3)
                        fprintf(stderr, "[rank %d] step %d %s[%lld]: got %.9g, want %.9g\n",
                                mt_rank, step, t->name, (long long)i, (double)t->buf[i],
                                (double)want);
                    bad++;
                }
            }
            wrong += bad;
        }
        if (wrong > 0)
            fprintf(stderr, "[rank %d] step %d: %lld wrong elements\n", mt_rank, step,
                    (long long)wrong);
        MT_CHECK(wrong == 0);
    }
    for (int k = 0; k < n; k++)
        free(tensors[k].buf);
}

int main(int argc, char **argv)
{
    static const mt_test_t tests[] = {
        {"resnet50_steps", test_resnet50_steps},
    };
    return mt_main(argc, argv, "workload", tests, sizeof tests / sizeof tests[0],
                   MT_HERD_OWNS_MPI);
}
