"""A tiny Transformer that learns whom "il" refers to, for the seed's example sentence.

"Le chat dort sur le tabouret car il est fatigué": "il" may be the cat or the stool, and only
the adjective decides (a cat gets tired, a stool does not). This module generates many
French-like sentences of that kind, where the referent of "il" is an animal when the adjective
describes a living being (fatigué, affamé...) and an object otherwise (cassé, bancal...); the
noun order varies, so that neither the position nor the first noun gives the answer. A small
Transformer (a pre-norm block as in ViT, then a read-out attention over the words, both
``keras.layers.MultiHeadAttention``; see :func:`build_model`) is trained to output, at the
position of "il", the word it refers to. Predicting the word itself (not "first or second
noun") forces the model to fetch the noun's identity through attention.

Every sentence pairing the cat with the stool is held out of training: the model never sees
the seed sentence, its counterpart, nor any sentence where "chat" and "tabouret" meet.

Following the minimal Transformer of Vaswani et al. (2017), encoder only; sizes use the ViT
vocabulary (embed_dim, depth, num_heads, mlp_dim).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

SEED_SENTENCE = "le chat dort sur le tabouret car il est fatigué"
# The same sentence with an adjective that describes the stool: "il" must now be the stool.
COUNTER_SENTENCE = "le chat dort sur le tabouret car il est cassé"
PRONOUN = "il"
PAD = "<pad>"

ANIMALS = ("chat", "chien", "lapin", "renard", "hamster", "perroquet")
OBJECTS = ("tabouret", "canapé", "tapis", "fauteuil", "coussin", "banc")
# Adjectives that describe the animal (animate) or the object (inanimate).
ANIMATE = ("fatigué", "affamé", "malade", "content", "endormi", "inquiet")
INANIMATE = ("cassé", "bancal", "mouillé", "neuf", "solide", "confortable")
VERBS = ("dort", "saute", "reste", "joue")
# {a}: animal, {o}: object, {v}: verb, {j}: adjective. Both noun orders occur.
TEMPLATES = (
    "le {a} {v} sur le {o} car il est {j}",
    "le {a} {v} près du {o} car il est {j}",
    "sur le {o} {v} le {a} car il est {j}",
    "le {o} attend le {a} car il est {j}",
    "ce soir le {a} {v} sur le {o} car il est très {j}",
    "près du {o} le {a} {v} car il est {j}",
)
# Held out of training and validation: every sentence in which the cat and the stool appear
# together (so the seed sentence, its counterpart, and all their variants).
HELD_OUT = ("chat", "tabouret")


@dataclass
class Corpus:
    """Tokenised sentences: ``tokens (S, T)`` int, ``pronoun_pos (S,)``, ``target (S,)``."""

    sentences: list[str]
    tokens: np.ndarray
    pronoun_pos: np.ndarray
    target: np.ndarray
    referent_pos: np.ndarray
    vocab: list[str]

    def __len__(self) -> int:
        return len(self.sentences)


def build_vocab() -> list[str]:
    words = {w for t in TEMPLATES for w in t.split() if not w.startswith("{")}
    words |= set(ANIMALS) | set(OBJECTS) | set(ANIMATE) | set(INANIMATE) | set(VERBS)
    return [PAD] + sorted(words)


def generate(include_held_out: bool = False) -> list[tuple[str, str]]:
    """Every sentence of the grammar with its referent: ``[(sentence, referent), ...]``."""
    out = []
    for t, a, o, v, j in itertools.product(TEMPLATES, ANIMALS, OBJECTS, VERBS, ANIMATE + INANIMATE):
        if "{v}" not in t and v != VERBS[0]:
            continue  # templates without a verb: once
        if not include_held_out and (a, o) == HELD_OUT:
            continue
        out.append((t.format(a=a, o=o, v=v, j=j), a if j in ANIMATE else o))
    return out


def encode(pairs, vocab: list[str], max_len: int | None = None) -> Corpus:
    """Tokenise ``[(sentence, referent)]`` (unknown words -> ValueError naming them)."""
    index = {w: i for i, w in enumerate(vocab)}
    words = [s.split() for s, _ in pairs]
    unknown = sorted({w for ws in words for w in ws if w not in index})
    if unknown:
        raise ValueError(f"words not in the toy vocabulary: {unknown}")
    t = max_len or max(len(ws) for ws in words)
    tokens = np.zeros((len(pairs), t), dtype=np.int32)
    pron, target, ref = [], [], []
    for i, (ws, (_, r)) in enumerate(zip(words, pairs)):
        tokens[i, : len(ws)] = [index[w] for w in ws]
        pron.append(ws.index(PRONOUN))
        target.append(index[r])
        ref.append(ws.index(r))
    return Corpus(
        [s for s, _ in pairs], tokens, np.array(pron), np.array(target), np.array(ref), vocab
    )


def make_datasets(seed: int = 0, n_train: int = 2000, n_val: int = 500):
    """Train/validation corpora drawn without overlap from the grammar (the cat-stool pair
    held out of both), and a corpus of two sentences never seen: the seed sentence (referent
    "chat") and its counterpart ending in "cassé" (referent "tabouret")."""
    vocab = build_vocab()
    pairs = generate()
    if n_train + n_val > len(pairs):
        raise ValueError(f"n_train + n_val = {n_train + n_val} exceeds the {len(pairs)} sentences")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pairs))[: n_train + n_val]
    t = max(len(s.split()) for s, _ in generate(include_held_out=True))
    val = encode([pairs[i] for i in order[:n_val]], vocab, t)
    train = encode([pairs[i] for i in order[n_val:]], vocab, t)
    seed_corpus = encode([(SEED_SENTENCE, "chat"), (COUNTER_SENTENCE, "tabouret")], vocab, t)
    return train, val, seed_corpus


def build_model(
    vocab_size: int,
    max_len: int,
    embed_dim: int = 32,
    depth: int = 1,
    num_heads: int = 2,
    mlp_dim: int = 64,
):
    """``tokens (B, T) -> {"logits": (B, T, V), "attention": [(B, H, T, T)] * (depth + 1)}``.

    ``depth`` pre-norm Transformer blocks (self-attention + MLP, as in ViT) contextualise the
    words; then a *read-out* attention block, whose queries are the contextualised states and
    whose keys and values are the input embeddings (word + position), produces the logits. Reading
    from the words (not from contextualised states) means that what "il" outputs is the word
    it attends to: without it, a model may first copy the noun into another token (e.g. the
    adjective) and have "il" read it there, which solves the task but hides the coreference
    from the attention map (we observed exactly this with a plain 2-block encoder).
    """
    import keras
    from keras import layers, ops

    tokens = keras.Input((max_len,), dtype="int32", name="tokens")
    pad_mask = ops.not_equal(tokens, 0)  # (B, T)
    att_mask = ops.logical_and(pad_mask[:, None, :], pad_mask[:, :, None])  # (B, T, T)
    att_mask = ops.logical_or(att_mask, ops.eye(max_len, dtype="bool")[None])  # pads see self
    words = layers.Embedding(vocab_size, embed_dim, name="token_embedding")(tokens)  # (B, T, C)
    pos = layers.Embedding(max_len, embed_dim, name="position_embedding")(
        ops.arange(max_len)[None]
    )  # (1, T, C)
    e = words + pos  # (B, T, C)
    x = e
    attentions = []
    for i in range(depth):
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        h, a = layers.MultiHeadAttention(
            num_heads, embed_dim // num_heads, name=f"block{i}_attention"
        )(h, h, attention_mask=att_mask, return_attention_scores=True)  # a: (B, H, T, T)
        x = x + h
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        h = layers.Dense(mlp_dim, activation="gelu", name=f"block{i}_mlp1")(h)
        x = x + layers.Dense(embed_dim, name=f"block{i}_mlp2")(h)  # (B, T, C)
        attentions.append(a)
    q = layers.LayerNormalization(epsilon=1e-6, name="readout_ln")(x)
    r, a = layers.MultiHeadAttention(num_heads, embed_dim // num_heads, name="readout_attention")(
        q, e, attention_mask=att_mask, return_attention_scores=True
    )  # (B, T, C)
    attentions.append(a)
    logits = layers.Dense(vocab_size, name="head")(r)  # (B, T, V)
    return keras.Model(tokens, {"logits": logits, "attention": attentions}, name="toy_transformer")


def _targets(corpus: Corpus):
    """Per-position targets and weights: only the pronoun's position counts."""
    y = np.zeros(corpus.tokens.shape, dtype=np.int32)
    w = np.zeros(corpus.tokens.shape, dtype=np.float32)
    rows = np.arange(len(corpus))
    y[rows, corpus.pronoun_pos] = corpus.target
    w[rows, corpus.pronoun_pos] = 1.0
    return y, w


def train(
    train_corpus: Corpus,
    val_corpus: Corpus,
    epochs: int = 8,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    seed: int = 0,
    jit_compile: bool = False,
    **model_kwargs,
):
    """Build and train the toy model; returns ``(model, history dict)``.

    The loss is the cross-entropy of the referent word at the position of "il" only.
    """
    import keras

    keras.utils.set_random_seed(seed)
    model = build_model(len(train_corpus.vocab), train_corpus.tokens.shape[1], **model_kwargs)
    trainer = keras.Model(model.input, model.output["logits"])
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["accuracy"],
        jit_compile=jit_compile,
    )
    y, w = _targets(train_corpus)
    vy, vw = _targets(val_corpus)
    hist = trainer.fit(
        train_corpus.tokens,
        y,
        sample_weight=w,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(val_corpus.tokens, vy, vw),
        verbose=0,
        shuffle=True,
    )
    return model, hist.history


def predict(model, corpus: Corpus):
    """Referent predicted at the pronoun: ``(words list, attention list of (S, H, T, T))``."""
    out = model(corpus.tokens, training=False)
    logits = np.asarray(out["logits"])  # (S, T, V)
    rows = np.arange(len(corpus))
    pred = logits[rows, corpus.pronoun_pos].argmax(-1)
    atts = [np.asarray(a) for a in out["attention"]]
    return [corpus.vocab[i] for i in pred], atts


def accuracy(model, corpus: Corpus) -> float:
    words, _ = predict(model, corpus)
    truth = [corpus.vocab[i] for i in corpus.target]
    return float(np.mean([a == b for a, b in zip(words, truth)]))


def pronoun_attention(attentions, corpus: Corpus, index: int = 0) -> np.ndarray:
    """Attention of the pronoun to every word, per layer and head: ``(L, H, n_words)``."""
    n = int((corpus.tokens[index] != 0).sum())
    p = corpus.pronoun_pos[index]
    return np.stack([np.asarray(a)[index, :, p, :n] for a in attentions])


def words(corpus: Corpus, index: int = 0) -> list[str]:
    return corpus.sentences[index].split()
