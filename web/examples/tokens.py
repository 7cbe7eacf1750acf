"""Tokenization: how the model sees text, one colour per token.

The model never sees letters: the tokenizer cuts text into tokens, pieces from its
vocabulary, and the model sees their ids. GPT-2's byte-level BPE starts from single bytes and
merges the pairs that were most frequent in its training text, so common words are one token
and rare ones several. A byte-level model (a vocabulary of 256) sees one token per byte. A
token that holds only part of a character's UTF-8 bytes shows them as \\x.. escapes. Hover
over a token for its id.
"""

text = params.prompt + "\nTo be, or not to be, that is the question: naïve café!"

ids = model.tokenizer.encode(text)
pieces = [(model.tokenizer.token_bytes(i).decode("utf-8", "backslashreplace"), i) for i in ids]
page.tokens(pieces, title=f"{len(text)} characters, {len(ids)} tokens "
                          f"(vocabulary: {model.config.vocab_size})")

print("ids:", ids)
assert model.tokenizer.decode(ids) == text  # decoding gives the text back, exactly
