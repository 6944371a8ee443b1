"""How an error names a character the vocabulary does not know, with a hint of what was meant.

A hint only; nothing is mapped silently. The forms of the character the vocabulary knows: another width
(':' for '：'), the form of an ASCII mark Chinese text writes ('。' for '.'), a mark a reader takes for it
('〖' for '【'); and, for a model of simplified (or traditional) Chinese, that the character looks like one
of the other script ('寶' for a model that writes '宝'). `Vocab.name_unseen` puts them together.
"""

from __future__ import annotations

import functools
import itertools
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Collection

from .errors import CharLMError, FieldError, counted
from .forms import is_han

SHOWN_UNSEEN = 10  # unseen characters an error or a warning names (`first_named`), then " ..."
# ASCII punctuation and the forms Chinese text writes it in, the likeliest meant first: ',' is '，' (its
# full-width form, which Unicode pairs with it too: see `other_forms`) before the enumeration comma '、';
# '.' is '。', or one of the '…' a seed's '...' stands for; '[' is the '【' a Chinese input method types for it.
CJK_PUNCTUATION = {".": "。…", ",": "，、", "<": "《", ">": "》", "[": "【", "]": "】", '"': "“”", "'": "‘’"}
# Corner brackets, as traditional Chinese (and Japanese) quotes, and the quotation marks simplified text uses.
CORNER_QUOTES = {"「": "“", "」": "”", "『": "‘", "』": "’"}
# Marks a reader takes for one another, each a family whose members hint the others, in its order. One text
# writes one, another the other, for the same mark: hongloumeng's dash is '——', '──' and '－－'; its song
# titles are in '〖〗' where others write '【】'; the same GB2312 byte is '―' to Python's gb2312 and '—' to
# GBK, its middle dot '・' and '·', Big5's '•' and cp950's '‧', Shift_JIS's wave dash '〜' and cp932's '～';
# Taiwan's ellipsis is '⋯', the mainland's '…'. Not '《》' and '〈〉': the single angle brackets are the
# title mark inside the double ones, another mark, as '‘' is inside '“'.
SAME_MARKS = ("…⋯", "【〖", "】〗", "—―─－", "～〜~", "·・•‧")
# A vocabulary is simplified Chinese (`is_simplified_chinese`) with this many Han characters or more,
# nearly all in GB2312: hongloumeng's 4,401 are 96% GB2312, tangshi300's 2,553 98%. It is traditional
# Chinese (`is_traditional_chinese`) with nearly all in Big5: the two in traditional characters (OpenCC
# 's2t') are 98.6% and 99.5% Big5 (and 62%, 64% GB2312); in simplified ones, as they are, 68% Big5.
MIN_HAN = 50
HAN_SHARE = 0.9
# `Vocab.name_unseen`'s hint: a question, as Big5's frequent characters hold a few rare ones simplified text
# writes too ('浥', '珮' of the Tang poems) besides the traditional forms of everyday ones ('寶', '們', '來').
TRADITIONAL_NOTE = "traditional? this model knows simplified Chinese"
SIMPLIFIED_NOTE = "simplified? this model knows traditional Chinese"  # the other way round (`looks_simplified`)
# Big5's frequent characters (常用字), its first level: where the traditional forms of everyday characters
# are. Its second level (次常用字) is mostly rare characters that simplified text writes too and GB2312
# lacks ('豗', '砯', '剺'): they are no traditional forms.
BIG5_FREQUENT = range(0xA440, 0xC67F)
# The 176 of Big5's frequent characters GB2312 lacks that have no simplified form: rare ones simplified
# text writes as they are (hongloumeng's '隄', '珮', '祐'). OpenCC 1.4.2's traditional-to-simplified
# conversion (OpenCC('t2s').convert) leaves each as it is, and changes the other 1,897.
NO_SIMPLIFIED_FORM = frozenset(
    "伋伕佺倣偭偯偺傚僇僎僩儅儳劻勗勦吋呎啗啣嘐堉塭塽墦奭妳姅姪嬝屘屝崁巉帟彊徬惇愒慇抆揹搆搾撚撢擭敔昤晅"
    "晞暍暱暸杗枓栘梂梡梱棻楛榣槃橾櫂櫺歜毚毬汍沍沘沬泜洸浥浬涊湣湩湲潟潠澴濩濬炤焜煆煖燄燐燸牠玆玥玨珪珮"
    "琍琯瑯璘璟瓖甦甽疢痲痳痺瘉睪瞇瞋瞭砠砲硿祇祐穋箄箠篛簷籐籣籥糢縿繙耑脤脰芣蔆蘗衹裯褕褽覜觔觼詨詻誧豭"
    "賸跦跼踡踫迆迺遝郃鄗鄘釆釭鉼銲鎗鑤阬隄雊霤韹餽鯈鶸鼇"
)
# The 192 of GB2312's characters Big5 lacks that have no traditional form: radicals ('亻', '氵'), chemistry's
# ('氕' is Big5's; '酰', '脲' are not) and rare ones traditional text writes as they are. OpenCC 1.4.2's
# simplified-to-traditional conversion (OpenCC('s2t').convert) leaves each as it is (and '着', which it
# cannot tell from '著'), and changes the other 2,188 ('宝' to '寶').
NO_TRADITIONAL_FORM = frozenset(
    "丨丬丶丿亠亻仫伲倮傈冂冖冫凇凼刂劐勐勹卟卩厶吖吡吣吲呋咔咣咴哌哐哚唣唿啉喹嗪嗬嗵嘞嘣嘭噍噔噻噼嚯坂垡垧埝"
    "埯塄塬墒墚夂宀尜岙岜峁崾嵛嵴巛幞幺廴彐彡忄憷扌揞揸擀攴攵敫晗桊桕榀榘檫毪氵氽沲浜溻漤灬炻烀煅煊煳煺熘犏犟"
    "犭狍猸猹珉珏甙畲疃疒痃癀癍癔癯着睃砘砹砼硇硷碹磙礴礻筢筻箢篼罱耠耥耱肀肟肷肼肽胩胬脎脒脲腈腙腚膪臁舭舾艹"
    "芪苄苊苘苷茚莜萘萜葜蒈蒽蔸藁蝰蝽螋蟮衤踺軎辶郄酞酰酶醌鐾阝鞴骶骺鬏黢鼗齄"
)


def never_seen(what: str, chars: list[str], name: Callable[[str], str], field: str | None = None) -> CharLMError:
    """The error for `chars` a model cannot take, each as `name` names it (`Vocab.name_unseen`): one
    wording for a seed's and a template's or acrostic's, so a user of traditional characters typing
    both is told of every character at once, in the same words. `field`: the option `what` is, bare
    (a `FieldError`'s), where the caller has one."""
    message = (
        f"{what}: {counted(len(chars), 'character')} the model has never seen: {first_named(chars, name)}; "
        "use only characters from the training text"
    )
    return CharLMError(message) if field is None else FieldError(message, field)


def first_named(chars: list[str], name: Callable[[str], str]) -> str:
    """The first SHOWN_UNSEEN of `chars`, each as `name` names it, then " ..." where there are more."""
    return " ".join(map(name, chars[:SHOWN_UNSEEN])) + (" ..." if len(chars) > SHOWN_UNSEEN else "")


def with_hint(char: str, hint: str, quoted: bool = False) -> str:
    """`char` as Python writes it (`quoted`: already written so), then `hint` in parentheses where there is
    one: ',' (did you mean '，'?)."""
    name = char if quoted else repr(char)
    return f"{name} ({hint})" if hint else name


def other_script(chars: Collection[str]) -> tuple[frozenset[str], str]:
    """The characters of Chinese's other script a vocabulary of `chars` does not know, and what
    `Vocab.name_unseen` says of one: for a model of simplified Chinese the traditional forms
    (TRADITIONAL_NOTE), for one of traditional Chinese the simplified (SIMPLIFIED_NOTE); none for any other."""
    if is_simplified_chinese(chars):
        others, note = traditional_characters(), TRADITIONAL_NOTE
    elif is_traditional_chinese(chars):
        others, note = simplified_characters(), SIMPLIFIED_NOTE
    else:
        return frozenset(), ""
    return frozenset(others) - set(chars), note


def is_simplified_chinese(chars: Collection[str]) -> bool:
    """Whether `chars` are a vocabulary of simplified Chinese: HAN_SHARE of its Han characters or more in
    GB2312, simplified Chinese's character set (a novel's rarest ones are not)."""
    return han_share_in(chars, in_gb2312) >= HAN_SHARE


def is_traditional_chinese(chars: Collection[str]) -> bool:
    """Whether `chars` are a vocabulary of traditional Chinese: HAN_SHARE of its Han characters or more in
    Big5, traditional Chinese's character set, and not one of simplified Chinese (a text of characters
    both scripts write is in both sets: its unseen '寶' and '宝' would each be the other's)."""
    return han_share_in(chars, in_big5) >= HAN_SHARE and not is_simplified_chinese(chars)


def han_share_in(chars: Collection[str], charset: Callable[[str], bool]) -> float:
    """The share of the Han characters of `chars` that `charset` holds; 0 with fewer than MIN_HAN of them."""
    han = [c for c in chars if is_han(c)]
    return sum(map(charset, han)) / len(han) if len(han) >= MIN_HAN else 0.0


def in_gb2312(char: str) -> bool:
    return bool(char.encode("gb2312", errors="ignore"))


def in_big5(char: str) -> bool:
    return len(char.encode("big5", errors="ignore")) == 2


def looks_traditional(char: str) -> bool:
    """A Han character of Big5's frequent ones (traditional Chinese's character set) that GB2312,
    simplified Chinese's, lacks and that has a simplified form: '寶', '們', '來' (a character both
    write, '玉', is in both; a rare one with no simplified form, '隄', is not traditional)."""
    if not is_han(char) or in_gb2312(char) or char in NO_SIMPLIFIED_FORM:
        return False
    big5 = char.encode("big5", errors="ignore")
    return len(big5) == 2 and int.from_bytes(big5, "big") in BIG5_FREQUENT


def looks_simplified(char: str) -> bool:
    """A Han character of GB2312 (simplified Chinese's character set) that Big5, traditional Chinese's,
    lacks and that has a traditional form: '宝', '们', '来' (a rare one with no traditional form, '酰',
    or a radical, '亻', is not simplified)."""
    return is_han(char) and in_gb2312(char) and not in_big5(char) and char not in NO_TRADITIONAL_FORM


@functools.cache
def traditional_characters() -> str:
    """Every character `looks_traditional` says is traditional (1,897 of Big5's), in code point order."""
    return "".join(sorted(filter(looks_traditional, two_byte_characters("big5"))))


@functools.cache
def simplified_characters() -> str:
    """Every character `looks_simplified` says is simplified (2,188 of GB2312's), in code point order."""
    return "".join(sorted(filter(looks_simplified, two_byte_characters("gb2312"))))


def two_byte_characters(codec: str) -> set[str]:
    """The characters a two-byte encoding of Chinese (Big5, GB2312) writes in two bytes."""
    decoded = (
        bytes([lead, trail]).decode(codec, errors="ignore") for lead in range(0x81, 0xFF) for trail in range(0x40, 0xFF)
    )
    return {char for char in decoded if len(char) == 1}


def other_forms(char: str) -> list[str]:
    """The same character in another width ('：' for ':', ':' for '：', 'カ' for 'ｶ'), the form of an
    ASCII punctuation mark Chinese text uses ('。' for '.'), the quotation mark for a corner bracket
    ('“' for '「'), or a mark a reader takes for it (SAME_MARKS: '〖' for '【', '—' for '―'), and the
    other way round: the Chinese forms in CJK_PUNCTUATION's order, likeliest meant first ('，' before
    '、' for ','), a family's in its own, not in code point order."""
    return list(other_forms_table().get(char, ()))


@functools.cache
def other_forms_table() -> dict[str, dict[str, None]]:
    """Every mark with other forms, each with them in `other_forms`'s order: built once, and listed whole for
    the pages' hints (`Vocab.unseen_hints`)."""
    forms: defaultdict[str, dict[str, None]] = defaultdict(dict)  # a dict keeps the order of the pairs
    pairs = [pair for family in SAME_MARKS for pair in itertools.combinations(family, 2)]
    pairs += [(ascii_form, cjk) for ascii_form, cjk_forms in CJK_PUNCTUATION.items() for cjk in cjk_forms]
    pairs += CORNER_QUOTES.items()
    for code in (0x3000, *range(0xFF00, 0xFFF0)):  # the ideographic space and the half- and full-width forms
        tag, _, other = unicodedata.decomposition(chr(code)).partition(" ")
        if tag in ("<wide>", "<narrow>"):
            pairs.append((chr(code), chr(int(other, 16))))
    for one, other in pairs:
        forms[one][other] = None
        forms[other][one] = None
    return forms
