/* Example for `alpine-lsp check`: a "key = value" line splitter.
 * settings.c holds a near-copy of it, as happens when code is pasted and renamed. */
#include <ctype.h>
#include <string.h>

int config_split_line(const char *line, char *key, size_t key_size, char *value,
                      size_t value_size)
{
    const char *eq = strchr(line, '=');
    size_t n;

    if (eq == NULL)
        return -1;
    while (isspace((unsigned char)*line))
        line++;
    n = (size_t)(eq - line);
    while (n > 0 && isspace((unsigned char)line[n - 1]))
        n--;
    if (n + 1 > key_size)
        return -1;
    memcpy(key, line, n);
    key[n] = '\0';
    eq++;
    while (isspace((unsigned char)*eq))
        eq++;
    n = strlen(eq);
    while (n > 0 && isspace((unsigned char)eq[n - 1]))
        n--;
    if (n + 1 > value_size)
        return -1;
    memcpy(value, eq, n);
    value[n] = '\0';
    return 0;
}
