/* Example code for `make demo`: a small byte-buffer module with a few risky spots. */
#include <stdlib.h>
#include <string.h>

struct buffer {
    unsigned char *data;
    size_t len;
    size_t cap;
};

int buffer_init(struct buffer *b, size_t cap)
{
    b->data = malloc(cap);
    if (!b->data)
        return -1;
    b->len = 0;
    b->cap = cap;
    return 0;
}

/* No bounds check: copies past the end when len + n > cap. */
void buffer_append(struct buffer *b, const unsigned char *src, size_t n)
{
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

int buffer_append_checked(struct buffer *b, const unsigned char *src, size_t n)
{
    if (n > b->cap - b->len) {
        size_t cap = b->cap * 2 + n;
        unsigned char *p = realloc(b->data, cap);
        if (!p)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

/* Reads a 16-bit length prefix and trusts it. */
int parse_record(const unsigned char *pkt, int pkt_len, unsigned char *out)
{
    int len = (pkt[0] << 8) | pkt[1];
    int i;
    for (i = 0; i < len; i++)
        out[i] = pkt[2 + i];
    return len;
}

void buffer_free(struct buffer *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
