/*
 * http_fuzz.c -- a libFuzzer harness for the http target's answer reader
 * (http_parse in src/targets/http.c), outside the server: built with
 * AddressSanitizer and UBSan by test/t/093_http_fuzz.pl, which stubs the
 * server functions http.c calls elsewhere (the reader calls none of them).
 *
 * An input is one answer: its first byte chooses the sizes of the pieces
 * it arrives in, as read by http_receive (what it reads at once is at most
 * HTTP_IN_SIZE bytes, less what is not yet taken).  After each piece the
 * reader's state must be sane: what it keeps within its buffers, no
 * negative count of bytes to come.
 */
#include "../src/targets/http.c"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static HttpRequest req;
	static char in[HTTP_IN_SIZE];
	uint8_t		step = 1;

	memset(&req, 0, sizeof(req));
	req.in = in;
	req.part = HTTP_PART_HEAD;
	if (size > 0)
		step = *data++, size--;
	while (size > 0)
	{
		size_t		n = Min(Min((size_t) step % 64 + 1, size), (size_t) (HTTP_IN_SIZE - req.in_len));

		if (n == 0)
			break;				/* a head or a line longer than HTTP_IN_SIZE */
		memcpy(req.in + req.in_len, data, n);
		req.in_len += n;
		data += n;
		size -= n;
		step = step * 31 + 7;
		if (http_parse(&req) != HTTP_PARSE_MORE)
			break;
		if (req.in_len < 0 || req.in_len > HTTP_IN_SIZE || req.answer_len < 0 ||
			req.answer_len > HTTP_ANSWER_QUOTED || req.left < 0 || req.part > HTTP_PART_DONE)
			abort();
	}
	return 0;
}
