/* hello.exe: a tiny Windows helper shipped in the sample-app wheel; uses greet.dll. */
#include <stdio.h>

__declspec(dllimport) int sample_app_greet(const char *name, char *out, int size);

int main(int argc, char **argv)
{
    char text[256];
    sample_app_greet(argc > 1 ? argv[1] : "world", text, (int)sizeof text);
    puts(text);
    return 0;
}
