/* Example code for `make demo`: a stream reader that repeats logic from buffer.c. */
#include <stdlib.h>
#include <string.h>

struct stream {
    unsigned char *bytes;
    size_t used;
    size_t size;
};

/* Nearly the same as buffer_append_checked in buffer.c. */
int stream_write(struct stream *s, const unsigned char *src, size_t n)
{
    if (n > s->size - s->used) {
        size_t size = s->size * 2 + n;
        unsigned char *p = realloc(s->bytes, size);
        if (!p)
            return -1;
        s->bytes = p;
        s->size = size;
    }
    memcpy(s->bytes + s->used, src, n);
    s->used += n;
    return 0;
}

int stream_read_u32(const unsigned char *p, size_t avail, unsigned int *out)
{
    if (avail < 4)
        return -1;
    *out = (unsigned int)p[0] << 24 | (unsigned int)p[1] << 16 | (unsigned int)p[2] << 8 | p[3];
    return 4;
}

char *stream_dup_name(const char *name)
{
    char *copy = malloc(strlen(name));
    strcpy(copy, name);
    return copy;
}
