"""Text the model has never seen (issue 26, item 21): eval, inspect and the server read it, an unseen
character as one the model knows nothing about (the zero embedding), and leave it out of the score."""

import math
import shutil

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from openai import OpenAI

from charlm.inference_context import inference
from charlm.pieces import PieceVocab, train_model
from charlm.scoring import bits_per_char, prompt_logprobs, surprise
from charlm.serve.app import create_app
from charlm.serve.config import ServeConfig
from charlm.unseen import is_simplified_chinese, never_seen
from charlm.unseen_notes import unseen_note
from charlm.vocab import UNSEEN, Vocab

from .conftest import assert_one_line_error, cli, cli_args, make_model
from .test_cli import fox_run, trained  # noqa: F401 (the fixtures: a tiny run, "fox")
from .test_serve import page_ready, running, set_field, wait_healthy


def reference_bits(model, ids: torch.Tensor) -> tuple[float, int]:
    """Total bits of the known targets and their count, by hand: UNSEEN read as a zero embedding."""
    known = ids != UNSEEN
    inputs = F.embedding(ids.clamp(min=0), model.embed.weight) * known[:, None]
    with inference(model):
        out, _ = model.core(inputs[None, :-1])
        log_probs = F.log_softmax(model.head.logits(out[0]), dim=-1)
    chosen = log_probs.gather(1, ids[1:].clamp(min=0)[:, None])[:, 0]
    return -chosen[known[1:]].sum().item() / math.log(2), int(known[1:].sum())


def test_the_characters_never_seen_are_counted_in_the_singular_or_plural():
    """A seed of one character the model never saw was refused as "1 character(s) the model has never seen":
    one is a character, two are characters, as charlm counts everywhere else."""
    said = [str(never_seen("--seed", list(chars), repr)) for chars in ("z", "zy")]
    assert said == [
        "--seed: 1 character the model has never seen: 'z'; use only characters from the training text",
        "--seed: 2 characters the model has never seen: 'z' 'y'; use only characters from the training text",
    ]


def test_an_unseen_character_is_read_as_the_zero_embedding_and_left_out_of_the_score():
    torch.manual_seed(0)
    model = make_model("abcd", layers=1, hidden=8).eval()
    text = "abcdZabQQcd" * 30
    ids = model.vocab.encode(text, unseen=True)
    assert (ids == UNSEEN).sum() == 90 and ids[4] == UNSEEN
    total, count = reference_bits(model, ids)
    assert count == len(text) - 1 - 90
    assert abs(bits_per_char(model, ids) - total / count) < 1e-4
    seen = surprise(model, text, context="")
    assert np.isnan(seen.bits[4]) and len(seen.top[4]) > 0  # no probability, yet the model's guesses
    assert abs(seen.bpc - total / count) < 1e-4
    with pytest.raises(Exception, match="never seen: 'Z' 'Q'"):  # a seed still names them
        model.vocab.encode(text, what="--seed")


def test_old_style_scoring_is_unchanged_for_text_of_known_characters():
    torch.manual_seed(1)
    model = make_model("abcd", layers=2, hidden=8).eval()
    ids = model.vocab.encode("abcdabdcba" * 40)
    assert torch.equal(ids, model.vocab.encode("abcdabdcba" * 40, unseen=True))
    with inference(model):
        logits, _ = model(ids[None, :-1])
    expected = F.cross_entropy(logits[0], ids[1:]).item() / math.log(2)
    assert abs(bits_per_char(model, ids) - expected) < 1e-5
    assert unseen_note(model.vocab, ["abcd"]) == ""


def test_a_vocabulary_with_the_unknown_symbol_scores_unseen_characters_as_it_and_says_so():
    vocab = Vocab("abcd", unknown=True)
    with pytest.warns(UserWarning, match="not in the vocabulary"):  # the symbol, with a warning, as before
        ids = vocab.encode("abXd", unseen=True)
    assert ids.tolist() == [0, 1, vocab.unknown_id, 3]
    note = unseen_note(vocab, ["abXdX"])
    assert note.startswith("2 unseen characters scored as the unknown symbol '\ufffd' (1 distinct: 'X' 2 times); ")
    assert "not the probability of each" in note


@pytest.mark.parametrize("unknown", [False, True])
def test_the_unseen_note_counts_every_occurrence_without_a_loop_over_the_characters(unknown, monkeypatch):
    """The note's count asked `knows` of every character of the text, in Python: for a big file, a loop
    over millions. It is counted vectorized, a slice at a time, the symbol itself written in the text known."""
    vocab = Vocab("abcd", unknown=unknown)
    symbol = vocab.chars[vocab.unknown_id] if unknown else ""
    text = ("abXd" + symbol + "YcX") * 1000
    monkeypatch.setattr("charlm.vocab.UNKNOWN_SLICE", 333)  # slices cutting the text anywhere
    monkeypatch.setattr(Vocab, "knows", lambda self, char: pytest.fail("knows() asked of each character"))
    assert unseen_note(vocab, [text]).startswith(f"3,000 unseen characters {'scored as' if unknown else 'excluded'}")


def test_the_unseen_note_says_which_form_the_model_knows_in_one_short_line():
    """eval's note named an ASCII ',' plainly where the model knows '，' (a seed's error says "did you mean");
    it says so too, the list still one short line, without the traditional note (a seed's '們' is typed by
    a user of traditional characters; a text's, a quotation in a simplified one, is written so)."""
    poem = "床前明月光疑是地上霜举头望低思故乡春眠不觉晓处闻啼鸟夜来风雨声花落知多少白日依山尽黄河入海流欲穷千里目更上一层楼"
    vocab = Vocab(sorted(set(poem + "，：、")))  # GB2312's characters: a vocabulary of simplified Chinese
    text = "明,月:們" + "".join(chr(0x4E00 + i) for i in range(100, 140)) + ",:" + poem  # the poem: most is known
    note = unseen_note(vocab, [text])
    assert is_simplified_chinese(vocab.chars) and vocab.name_unseen("們").startswith("'們' (traditional")
    named = "',' 2 times (the model writes '，' or '、') ':' 2 times (the model writes '：') '們' once '乤' once"
    assert note.startswith(f"45 unseen characters excluded from the score (43 distinct: {named} ...); ")


def test_the_unseen_note_on_a_file_says_how_often_each_is_found_and_what_to_do_without_asking():
    """eval's note on a file's unseen characters asked "'「' (did you mean '“'?)", a seed's words: no one
    typed the file. It names each with how many times the text has it and the form the model writes,
    says they are left out of the score, and what scores them: a fine-tune on such text, or (where the
    model writes another form) writing them as the model does."""
    vocab = Vocab(sorted(set("宝玉道：“好。”\n")))
    note = unseen_note(vocab, ["宝玉道：「好」。「好」。瞿\n" * 3])
    named = "'「' 6 times (the model writes '“') '」' 6 times (the model writes '”') '瞿' 3 times"
    assert note == (
        f"15 unseen characters excluded from the score (3 distinct: {named}); to score them, fine-tune the "
        "model on text that has them (charlm train FILE --init-from RUN) or write them as the model does"
    )
    assert "did you mean" not in note
    plain = unseen_note(vocab, ["宝玉道：瞿好。\n" * 3])  # no form the model writes: nothing to write instead
    assert plain.endswith(
        "'瞿' 3 times); to score them, fine-tune the model on text that has them (charlm train FILE --init-from RUN)"
    )
    assert vocab.name_unseen("「") == "'「' (did you mean '“'?)"  # a seed's, typed: still asked


@pytest.mark.parametrize("unknown", [False, True])
def test_the_unseen_note_counts_thousands_of_distinct_characters_with_a_separator(unknown):
    """`--eval-also` a Chinese run's held-out text beside an English model said "49,436 unseen characters
    excluded from the score (1884 distinct: ...)": one count with a thousands separator, the other without."""
    note = unseen_note(Vocab("ab\n", unknown=unknown), ["a" + "".join(chr(0x4E00 + i) for i in range(1200)) * 2])
    assert note.startswith("2,400 unseen characters") and "(1,200 distinct: " in note


def test_sentencepiece_spells_every_character_so_nothing_is_unseen():
    text = "the quick brown fox jumps over the lazy dog\n" * 40
    vocab = PieceVocab(train_model([text], "bpe", 300))
    other = "the ZEBRA 😀 jumps"
    assert torch.equal(vocab.encode(other, unseen=True), vocab.encode(other))
    assert vocab.decode(vocab.encode(other)) == other and unseen_note(vocab, [other]) == ""


@pytest.mark.usefixtures("trained")
def test_eval_scores_a_file_with_unseen_characters_and_says_how_many_it_left_out(tmp_path):
    known, odd = tmp_path / "known.txt", tmp_path / "odd.txt"
    known.write_text("the lazy dog jumps over the quick brown fox\n" * 5, encoding="utf-8")
    odd.write_text("the lazy <dog> jumps over the quick brown fox\n" * 5, encoding="utf-8")
    plain = cli("eval", "fox", str(known))
    assert plain.exit_code == 0 and "unseen" not in plain.output, plain.output
    result = cli("eval", "fox", str(odd), "--quiet")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "bits per character over 219 characters scored" in lines[0]
    assert lines[1] == (
        "10 unseen characters excluded from the score (2 distinct: '<' 5 times '>' 5 times); to score them, "
        "fine-tune the model on text that has them (charlm train FILE --init-from fox)"
    )


@pytest.mark.usefixtures("trained")
@pytest.mark.parametrize("command", ["eval", "inspect"])
def test_the_unseen_note_names_the_run_it_scored_under_as_a_shell_types_it(tmp_path, command):
    """eval's and inspect's advice said `--init-from RUN` of a run the user had just named: the run is named,
    quoted where a shell would split it."""
    shutil.copytree("checkpoints/fox", "checkpoints/my fox")
    odd = tmp_path / "odd.txt"
    odd.write_text("the lazy <dog> jumps over the quick brown fox\n" * 5, encoding="utf-8")
    result = cli(
        command, "checkpoints/my fox", str(odd), "--quiet", *(["--output", "page.html"] * (command == "inspect"))
    )
    assert result.exit_code == 0, result.output
    assert "(charlm train FILE --init-from 'checkpoints/my fox')" in result.output


@pytest.mark.usefixtures("trained")
def test_inspect_marks_unseen_characters_on_the_page(tmp_path):
    unseen = tmp_path / "unseen.txt"
    unseen.write_text("the quick brown fox, Zed\n", encoding="utf-8")
    result = cli("inspect", "fox", str(unseen), "--output", "page.html")
    assert result.exit_code == 0, result.output
    assert "2 unseen characters excluded from every bits figure (2 distinct" in result.output
    # the count beside the bits per character is of the characters scored: it was 25, the unseen too;
    # not the first either, which is read, as eval reads it; the text's own 25 are said beside it
    assert "lstm on 25 characters (22 of them scored): " in result.output
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "lstm on 25 characters (22 of them scored): <b>" in page
    assert '<span class="unseen"' in page and page.count('class="unseen"') == 2
    assert "nan" not in result.output.lower()
    assert_one_line_error(cli("inspect", "fox", "missing.txt"), "missing.txt")


@pytest.mark.usefixtures("trained")
def test_inspect_quiet_keeps_the_unseen_note_as_eval_quiet_does(tmp_path):
    """`charlm inspect --quiet` dropped the note with the tables: its page's figures left characters out
    and nothing said so, where `charlm eval --quiet` keeps its note. Quiet drops progress and tables,
    not what changes how a figure reads."""
    unseen = tmp_path / "unseen.txt"
    unseen.write_text("the quick brown fox, Zed\n", encoding="utf-8")
    result = cli("inspect", "fox", str(unseen), "--output", "page.html", "--quiet")
    assert result.exit_code == 0, result.output
    note, wrote = result.output.splitlines()
    assert (
        note.startswith("2 unseen characters excluded from every bits figure (2 distinct")
        and wrote == "wrote page.html"
    )


def test_the_server_reads_a_prompt_with_unseen_characters_and_names_them_for_the_page():
    torch.manual_seed(0)
    model = make_model("\n abcdefghijklmnopqrstuvwxyz", layers=1, hidden=16).eval()
    app = create_app({"tiny": lambda: model}, ServeConfig(max_streams=4, max_tokens=100, max_prompt=100))
    with running(app) as url:
        wait_healthy(url)
        client = OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        response = client.completions.create(
            model="tiny", prompt="the Zoo", max_tokens=5, seed=1, echo=True, logprobs=2
        )
        logprobs = response.choices[0].logprobs
        assert response.choices[0].text.startswith("the Zoo") and logprobs.tokens[:7] == list("the Zoo")
        assert logprobs.token_logprobs[4] is None and len(logprobs.top_logprobs[4]) == 2  # 'Z': no probability
        assert all(lp is not None and lp < 0 for lp in logprobs.token_logprobs[1:4] + logprobs.token_logprobs[5:])
        again = client.completions.create(
            model="tiny", prompt="the Zoo", max_tokens=5, seed=1, extra_body={"repetition_penalty": 1.3}
        )
        assert len(again.choices[0].text) == 5
        bad = httpx.post(f"{url}/v1/completions", content='{"model": "tiny", "prompt": "a\\ud800"}')
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"  # not a character: still refused
        assert "lone surrogate" in bad.json()["error"]["message"]
        meta = httpx.get(f"{url}/v1/models").json()["data"][0]["meta"]
        assert meta["characters"] == "\n abcdefghijklmnopqrstuvwxyz"
    assert [t for t, _, _ in prompt_logprobs(model, "aZ", 1)] == ["a", "Z"]


@pytest.mark.slow  # a browser: the full suite runs it
@pytest.mark.usefixtures("browser")
def test_the_serve_page_says_which_characters_of_the_seed_the_model_does_not_know(request):
    driver = request.getfixturevalue("browser")
    torch.manual_seed(0)
    model = make_model("\n abcdefghijklmnopqrstuvwxyz", layers=1, hidden=16).eval()
    app = create_app({"tiny": lambda: model}, ServeConfig(max_tokens=100))
    with running(app) as url:
        wait_healthy(url)
        wait = page_ready(driver, url)
        set_field(driver, "seed", "the Zoo")
        set_field(driver, "length", "20")
        driver.find_element("id", "generate").click()
        wait(driver, 15).until(lambda d: "done" in d.find_element("id", "status").text)
        status = driver.find_element("id", "status").text
        assert "the model does not know 'Z'" in status, status  # as charlm names characters
        set_field(driver, "seed", "the zoo")
        driver.find_element("id", "generate").click()
        wait(driver, 15).until(
            lambda d: (
                "done" in d.find_element("id", "status").text and "know" not in d.find_element("id", "status").text
            )
        )


def test_eval_under_the_latest_run_of_another_script_says_the_figure_says_little_of_the_file(tmp_path, tiny):
    """`charlm eval english.txt` under the latest run, a Chinese model's, printed a bpc over the few
    characters the model knew and "2,900 unseen characters excluded": the figure read as the file's own.
    Where most of the text is unseen the note now says so, as a share, and what to do; where a few
    characters are, it stays as it was."""
    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。\n" * 40
    (tmp_path / "poems.txt").write_text(poem, encoding="utf-8")
    assert cli("train", "poems.txt", "--out", "poems", *cli_args({**tiny, "max_steps": 2})).exit_code == 0
    (tmp_path / "english.txt").write_text("the moon is bright tonight, 明月.\n" * 3, encoding="utf-8")
    scored = cli("eval", "english.txt", "--quiet")
    assert scored.exit_code == 0, scored.output
    figure, note = scored.stdout.splitlines()  # stderr names the latest run's model
    assert figure.endswith(" bits per character over 9 characters scored")
    assert note.startswith("86 unseen characters excluded from the score (")
    assert note.endswith(
        "; 91% of the text is in characters this model never saw in training, so the figure says little of it: "
        "score it under a model trained on text in its script"
    )
    (tmp_path / "mostly.txt").write_text("明月光 " + poem[:40], encoding="utf-8")
    note = cli("eval", "mostly.txt", "--quiet").stdout.splitlines()[1]
    assert note.startswith("1 unseen characters excluded from the score (1 distinct: ' ' once); to score them")
