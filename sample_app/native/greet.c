/* greet.dll: the greeting sample-app's helper prints. */
#include <stdio.h>

__declspec(dllexport) int sample_app_greet(const char *name, char *out, int size)
{
    return snprintf(out, (size_t)size, "Hello, %s! (signed with kmssign)", name);
}
