"""The toy coreference Transformer learns, and "il" attends to "chat" in the seed sentence."""

import numpy as np
import pytest

from vitwatch.theory import toy_language as tl


def test_grammar_and_encoding():
    vocab = tl.build_vocab()
    pairs = tl.generate()
    assert all(("chat" not in s.split()) or ("tabouret" not in s.split()) for s, _ in pairs)
    assert tl.SEED_SENTENCE not in {s for s, _ in pairs}
    assert tl.COUNTER_SENTENCE not in {s for s, _ in pairs}
    assert tl.SEED_SENTENCE in {s for s, _ in tl.generate(include_held_out=True)}
    c = tl.encode(pairs[:50], vocab, 13)
    for i in range(50):
        ws = c.sentences[i].split()
        assert vocab[c.tokens[i, c.pronoun_pos[i]]] == "il"
        assert ws[c.referent_pos[i]] == vocab[c.target[i]]
    # referents: animal for animate adjectives, object otherwise; both noun orders occur
    kinds = {(s.split()[-1] in tl.ANIMATE, r in tl.ANIMALS) for s, r in pairs}
    assert kinds == {(True, True), (False, False)}
    assert len({c.referent_pos[i] for i in range(50)}) > 1
    with pytest.raises(ValueError, match="licorne"):
        tl.encode([("le licorne dort", "licorne")], vocab)


@pytest.fixture(scope="module")
def trained():
    train, val, seed = tl.make_datasets(seed=0)  # the notebook's settings
    model, history = tl.train(train, val, seed=0)
    return model, history, val, seed


def test_learns_and_generalises(trained):
    model, history, val, seed = trained
    assert history["loss"][-1] < history["loss"][0]
    assert tl.accuracy(model, val) > 0.95  # chance is 1/6 within a noun class
    words, _ = tl.predict(model, seed)
    assert words == ["chat", "tabouret"]  # held-out sentences, both readings


def test_il_attends_to_chat(trained):
    model, _, _, seed = trained
    _, atts = tl.predict(model, seed)
    ws = tl.words(seed, 0)
    readout = tl.pronoun_attention(atts, seed, 0)[-1].mean(axis=0)  # (n_words,)
    assert ws[int(np.argmax(readout))] == "chat"
    assert readout[ws.index("chat")] > 0.5 > readout[ws.index("tabouret")]
    counter = tl.pronoun_attention(atts, seed, 1)[-1].mean(axis=0)
    ws1 = tl.words(seed, 1)
    assert ws1[int(np.argmax(counter))] == "tabouret"
    # rows of every attention map are distributions
    for a in atts:
        np.testing.assert_allclose(np.asarray(a).sum(-1), 1.0, atol=1e-5)
