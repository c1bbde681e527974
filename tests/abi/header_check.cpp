/* Compiled as C99, C11 and C++ by ctest: the public header must stand alone in each. */
#include <herd.h>

int herd_header_check(void);
int herd_header_check(void)
{
    herd_handle_t h = 0;
    return (int)h + HERD_OK + HERD_FLOAT32 + HERD_SUM + HERD_DEVICE_CPU + HERD_ABI_VERSION;
}
