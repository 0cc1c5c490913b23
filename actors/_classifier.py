"""Task-type classification: which kind of work a request asks for, so it can be routed.

``TaskClassifier`` is the pluggable interface (any object with a ``classify`` method will
do); ``RuleClassifier`` is the built-in, deterministic implementation. Its docstring lists
the rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final, Literal, Protocol, final

from protocols import ImagePart, Message, NamedToolChoice, Request, TextPart, ToolResultPart

__all__ = ["TASK_TYPES", "RuleClassifier", "TaskClassifier", "TaskType"]

TaskType = Literal["code", "math", "extraction", "long_context", "creative", "chat"]
"""What a request asks for. ``extraction`` covers pulling fields out of text and any
structured (JSON) output."""

TASK_TYPES: Final[tuple[TaskType, ...]] = (
    "code",
    "math",
    "extraction",
    "long_context",
    "creative",
    "chat",
)


class TaskClassifier(Protocol):
    """Anything that can put a request in one of the task types."""

    def classify(self, request: Request) -> TaskType:
        """The request's task type. Must not raise for any valid ``Request``."""
        ...


# --- limits and scoring --------------------------------------------------------------------

# How much text the keyword rules read: the system prompt's head, and the last user message's
# head and tail (instructions usually sit at one end of a pasted document).
_SYSTEM_CHARS: Final = 2000
_USER_HEAD_CHARS: Final = 3000
_USER_TAIL_CHARS: Final = 1000
_CHARS_PER_TOKEN: Final = 4  # the same rough estimate the token limiter uses

# Below this best score the request is plain chat: one weak hint is not enough.
_MIN_SCORE: Final = 2.0
# Ties go to the earlier type.
_PRECEDENCE: Final[tuple[TaskType, ...]] = ("extraction", "code", "math", "creative", "chat")
_EXTRA_KEYWORD_WEIGHT: Final = 3.0

# --- features ------------------------------------------------------------------------------
#
# A feature is a named signal for one task type with a weight. Each feature counts at most
# once per request; a type's score is the sum of the weights of the features present.
# Keyword features are matched on lowercased word tokens (letters, digits, "_", with inner
# "." and "-" kept: "node.js", "key-value"); phrases are consecutive tokens. Syntax features
# are a few regexes over the raw text, each run only when a cheap substring test passes.

# feature -> (task type, weight)
_WEIGHTS: Final[dict[str, tuple[TaskType, float]]] = {
    # extraction / structured output
    "x_json": ("extraction", 4.0),
    "x_extract": ("extraction", 4.0),
    "x_verb": ("extraction", 3.0),
    "x_json_literal": ("extraction", 3.0),
    "x_fields": ("extraction", 2.0),
    "x_target": ("extraction", 2.0),
    "x_list": ("extraction", 1.5),
    "x_source": ("extraction", 1.0),
    # code
    "c_fence": ("code", 4.0),
    "c_trace": ("code", 4.0),
    "c_write": ("code", 4.0),
    "c_syntax": ("code", 3.0),
    "c_lang": ("code", 3.0),
    "c_vocab": ("code", 2.0),
    "c_ident": ("code", 2.0),
    # math
    "m_latex": ("math", 4.0),
    "m_formula": ("math", 3.0),
    "m_strong": ("math", 3.0),
    "m_percent_of": ("math", 3.0),
    "m_weak": ("math", 2.0),
    "m_arith": ("math", 2.0),
    "m_how_much": ("math", 1.0),
    # creative
    "w_form": ("creative", 4.0),
    "w_imagine": ("creative", 3.0),
    "w_weak": ("creative", 2.0),
    "w_write": ("creative", 2.0),
}

# feature -> "|"-separated words and phrases (in token form, lowercase).
_KEYWORDS: Final[dict[str, str]] = {
    "x_json": "json|jsonl",
    "x_extract": (
        "extract|extracts|extracting|extraction|named entities|entities|key-value"
        "|key value|key/value|structured data|structured output|structured record"
        "|structured format|ner|entity recognition"
    ),
    "x_verb": (
        "parse|parsing|pull out|fill in this|fill in the following|fill out this"
        "|normalize|normalise|tag the|tag each|split these|split this|give me just"
        "|give me only|return only|output only|reply only|respond only|reply with only"
        "|respond with only|pull the|pick out|tell me every"
    ),
    "x_fields": (
        "field|fields|column|columns|schema|template|as a table|in a table|into a table"
        "|a table with|table of|csv|tsv|yaml|xml|with keys|iso format|iso 8601"
        "|bullet points with|one per line|in the format"
    ),
    "x_target": (
        "mentioned in|mentioned here|mentioned above|mentioned below|are mentioned"
        "|is mentioned|were mentioned|email addresses|phone numbers|addresses|dates"
        "|dates and times|timestamps|names|people involved|persons|organisations"
        "|organizations|companies|locations|isbn|isbns|sku|skus|urls|amounts"
        "|dollar amounts|figures|totals|quantities|prices|currencies|action items"
        "|deadlines|every deadline|sentiment|medications|doses|dosages|skills"
        "|salary range|sender|recipient|parties|tracking number|invoice number"
        "|order number|account number|reference number|attributes|metadata|keywords"
        "|classify each|categorize each|categorise each|label each|identify the"
        "|list every|list all|find every|find all the|every person|hashtags|hashtag"
        "|mentions|employer|start date|flight number|components|for each of these|author"
        "|authors"
    ),
    "x_source": (
        "from this|from the following|in the following|from the text|in this text"
        "|the text below|the following text|this paragraph|this email|this note"
        "|these notes|this document|this message|the message below|this confirmation"
        "|this summary|this receipt|this invoice|this resume|this cv|the job ad|this page"
        "|this form|this transcript|this review|these reviews"
    ),
    "c_trace": ("segmentation fault|core dumped|stack trace|stacktrace|segfault|stack overflow"),
    "c_lang": (
        "python|javascript|typescript|kotlin|golang|php|haskell|bash|zsh|powershell"
        "|shell script|sql|mysql|postgres|postgresql|sqlite|mongodb|mongo|html|css|scss"
        "|sass|node.js|npm|pnpm|pip|conda|virtualenv|venv|django|flask|fastapi|rails"
        "|laravel|spring boot|next.js|svelte|tailwind|swiftui|xcode|android studio"
        "|flutter|dart|elixir|erlang|clojure|ocaml|fortran|cobol|matlab|vba|solidity|wasm"
        "|webassembly|gcc|clang|llvm|cmake|gradle|maven|cargo|rustc|pandas|numpy|scipy"
        "|tensorflow|pytorch|keras|sklearn|scikit-learn|jupyter|docker|dockerfile"
        "|kubernetes|k8s|helm|ansible|terraform|nginx|aws|gcp|azure|s3|ec2|git|github"
        "|gitlab|makefile|awk|sed|grep|regex|regexp|pytest|jest|mypy|eslint|webpack|vite"
        "|graphql|grpc|protobuf|openapi|swagger|redis|kafka|rabbitmq|elasticsearch|jquery"
        "|json schema|linux|vue.js|cron|crontab|systemd|curl|ssh|vim|vscode|powershell"
    ),
    "c_vocab": (
        "function|functions|method|methods|variable|variables|bug|bugs|debug|debugging"
        "|debugger|refactor|refactoring|compile|compiler|compiling|linker|exception"
        "|exceptions|pointer|pointers|thread|threads|mutex|semaphore|deadlock"
        "|race condition|concurrency|goroutine|coroutine|socket|async|await|callback"
        "|callbacks|repo|repository|commit|commits|commit message|rebase|merge conflict"
        "|stash|staged|unstaged|pull request|diff|deploy|deployment|container|containers"
        "|database|databases|primary key|foreign key|indexes|orm|endpoint|endpoints|http"
        "|https|cors|headers|status code|middleware|microservice|microservices|serverless"
        "|localhost|oauth|jwt|runtime|dependency|dependencies|syntax|for loop|while loop"
        "|infinite loop|loops|array|arrays|dict|dictionary|tuple|heap|hashmap|hash map"
        "|hash table|linked list|binary tree|binary search|sorting algorithm|recursion"
        "|recursive|time complexity|big o|type hint|type hints|generics|inheritance"
        "|polymorphism|object-oriented|oop|design pattern|singleton|dependency injection"
        "|struct|enum|null|nullptr|undefined|floating point|integer overflow|bitwise"
        "|memory leak|garbage collection|borrow checker|moved value|unit test|unit tests"
        "|test case|linter|ci|github actions|webhook|api|apis|api key|sdk|cli"
        "|command line|manifest|replicas|one-liner|snippet|codebase|stdout|stderr|script"
        "|scripts|scripting|queries|sql query|database query|slow query|this query"
        "|the query|left join|right join|inner join|outer join|exit code|cache|caching"
        "|lru|frontend|backend|front-end|back-end|source code|my code|this code|the code"
        "|code review|coding|programming|programmer|developer|software engineer"
        "|build error|compile error|the build|build fails|error message|config file"
        "|env var|environment variable|regular expression|ide|browser console"
        "|load balancer|virtual machine|vm|executable|algorithm|algorithms|data structure"
        "|leetcode|git branch|git checkout|database migration|server error"
        "|cron expression|shell command|user interface|div|flexbox|css grid|publickey"
        "|ssh key|git push|closure|closures|dev|devs|junior dev|callback-based"
        "|permission denied"
    ),
    "m_strong": (
        "solve|solving|prove|proof|show that|integral|integrate|antiderivative|derivative"
        "|differentiate|differentiable|probability|probabilities|theorem|lemma|corollary"
        "|axiom|eigenvalue|eigenvalues|eigenvector|eigenvectors|determinant|transpose"
        "|dot product|cross product|equation|equations|inequality|inequalities|quadratic"
        "|polynomial|factorial|prime number|prime numbers|primes|prime factor"
        "|prime factors|prime factorization|prime order|irrational|rational number"
        "|rational numbers|complex number|complex numbers|imaginary|countable|uncountable"
        "|cardinality|bijection|injective|surjective|subset|limit as|continuity|converge"
        "|converges|convergence|diverge|diverges|harmonic series|geometric series"
        "|arithmetic series|taylor series|maclaurin|power series|fourier series"
        "|infinite series|recurrence|induction|by induction|by contradiction|logarithm"
        "|logarithms|exponent|exponents|square root|cube root|standard deviation|variance"
        "|normal distribution|binomial|poisson|z-score|p-value|confidence interval"
        "|expected value|expected number|conditional probability|bayes|closed form"
        "|simplify|fraction|fractions|lowest terms|numerator|denominator|decimal"
        "|remainder|divisible|divided by|divisor|multiple of|modulo|gcd|lcm|perimeter"
        "|area of|surface area|volume of|circumference|radius|diameter|inscribed"
        "|hypotenuse|pythagorean|pythagoras|triangle|triangles|polygon|pentagon|hexagon"
        "|octagon|decagon|diagonals|interior angles|angle|angles|parabola|intercept"
        "|asymptote|vector|vectors|vector space|linear algebra|compound interest"
        "|compounded|integer|integers|consecutive|how many ways|permutation|permutations"
        "|combinations|combinatorics|without replacement|dice|coin flip|coin flips|math"
        "|maths|mathematics|algebra|calculus|geometry|trigonometry|cyclic|abelian"
        "|isomorphic|real solutions|related rates|mph|infinity|matrix|inverse of|sin|cos"
        "|radians|fair die|six-sided die|arithmetic sequence|geometric sequence|slope of"
        "|subsets|next number|in the sequence|dividing by zero|divide by zero"
        "|independent events"
    ),
    "m_weak": (
        "calculate|compute|evaluate|formula|average|the mean of|median|sum of|product of"
        "|ratio|proportion|proportional|odds|chance of|chance that|chances|how likely"
        "|percent|percentage|rule of 72|check my work|average speed|dividing|divide"
        "|division"
    ),
    "m_how_much": "how many|how much|how long",
    "w_form": (
        "poem|poems|poetry|haiku|sonnet|limerick|ode|acrostic|free verse|free-verse"
        "|stanza|lyrics|song|rap|ballad|hymn|story|stories|tale|tales|fairy tale|fable"
        "|parable|allegory|fiction|fanfic|novel|short story|first chapter|next chapter"
        "|slogan|slogans|tagline|taglines|motto|jingle|caption|captions|tweet|tweets"
        "|twitter thread|blurb|logline|elevator pitch|one-line pitch|pitch for|riddle"
        "|joke|jokes|pun|puns|limericks|satire|parody|rom-com|sitcom|monologue|screenplay"
        "|wedding toast|toast for|toast to|wedding vows|eulogy|bedtime|love letter"
        "|once upon a time|a scene|first scene|the scene where|pickup line|pick-up line"
        "|mission statement|soliloquy|diary entry|tv show"
    ),
    "w_imagine": (
        "imagine|imaginary|pretend|invent|make up|backstory|plot twist|villain|hero"
        "|heroine|protagonist|in character|break character|role-play|roleplay|rhyme"
        "|rhyming|couplets|verse|prose|vivid|lyrical|poetic|creative|creatively"
        "|brainstorm|product description|ad copy|marketing copy|opening paragraph"
        "|opening line|opening scene|dialogue between|conversation between"
        "|in the style of|in the voice of|point of view|from the perspective of"
        "|worldbuilding|world-building|fictional|fantasy world"
    ),
    "w_weak": (
        "funny|humorous|witty|playful|sarcastic|dramatic|spooky|heartwarming|catchy"
        "|magical|whimsical|quirky|come up with|names for|name ideas|fun name"
        "|continue this|continue the following|character|characters|epic|pitch me"
    ),
}


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split("|"))


# "write/implement ... a <thing>": a code verb followed within four words by a code object.
_CODE_VERBS: Final = frozenset({"write", "implement", "create", "code", "build", "generate"})
# "write/compose a ..." that names no code object and no practical document (email,
# report, summary, ...) is a creative request, however it is phrased.
_WRITING_VERBS: Final = frozenset({"write", "compose", "pen"})
_DETERMINERS: Final = frozenset({"a", "an", "the", "some", "me", "my", "our", "two", "three"})
_PRACTICAL_OBJECTS: Final = _word_set(
    "email|e-mail|emails|message|messages|text|reply|response|letter|note|notes|report"
    "|summary|essay|review|cv|resume|cover|bio|proposal|memo|agenda|complaint|request"
    "|invoice|contract|policy|plan|list|outline|abstract|document|documentation|docs"
    "|readme|comment|comments|commit|spec|job|paragraph|explanation|sentence|sentences"
    "|instructions|guide|tutorial|steps|checklist|faq|survey|questionnaire|quiz"
    "|questions|translation|answer|prompt|apology|invitation|formula"
)
_VERBS: Final = _CODE_VERBS | _WRITING_VERBS
_CODE_OBJECTS: Final = _word_set(
    "function|script|class|method|program|parser|cli|endpoint|query|regex|test|tests"
    "|decorator|module|api|makefile|dockerfile"
)
# Language names that are also ordinary words count only when capitalised in the text.
_CASED_LANGUAGES: Final = {
    name.lower(): name
    for name in ("Java", "Rust", "Swift", "Ruby", "Scala", "Perl", "Lua", "React", "Node")
}
_CASED_NAMES: Final = frozenset(_CASED_LANGUAGES)
# A file name with a source-code extension: app.py, InvoiceService.java, requirements.txt.
_SOURCE_FILE: Final = re.compile(
    r"\w\.(?:py|js|ts|tsx|jsx|go|rs|java|kt|rb|cpp|cc|hpp|cs|php|sh|ps1|sql|ya?ml|toml|lock"
    r"|txt|ini|cfg)\b"
)

_TOKEN: Final = re.compile(r"[a-z0-9_]+(?:[.-][a-z0-9_]+)*")

_PASTED: Final = re.compile(
    r"(?:^|[\s:(])(?:'[^'\n]{25,}'|\"[^\"\n]{25,}\"|\u201c[^\u201d]{25,}\u201d)(?=[\s.,;:!?)]|$)"
    r"|:[ \t]*\n\s*\S",
    re.MULTILINE,
)

# Syntax features: (feature, substrings of which one must occur, regex or None).
_Check = tuple[str, tuple[str, ...], re.Pattern[str] | None]
_SYNTAX: Final[tuple[_Check, ...]] = (
    ("c_fence", ("```",), None),
    ("c_trace", ("Traceback (most recent call last)",), None),
    ("c_trace", ('File "',), re.compile(r'\bFile "[^"\n]+", line \d+')),
    ("c_trace", ("Error", "Exception"), re.compile(r"[a-z](?:Error|Exception)\b")),
    ("c_syntax", ("=>", "#include", "console.", "#!/"), None),
    ("c_syntax", ("def ",), re.compile(r"\bdef \w+\(")),
    ("c_syntax", ("function",), re.compile(r"\bfunction\s*\w*\s*\(")),
    ("c_syntax", ("class ",), re.compile(r"\bclass \w+\s*[:({]")),
    ("c_syntax", ("import",), re.compile(r"(?m)^[ \t]*(?:import [\w.]+|from [\w.]+ import )")),
    ("c_syntax", ("=",), re.compile(r"\b(?:const|let|var) \w+ ?=|\w\s*[=!]==?\s*\w")),
    ("c_syntax", (";",), re.compile(r"(?m);[ \t]*$")),
    ("c_syntax", ("(",), re.compile(r"[a-z_]\.[a-z_]\w*\(")),
    ("c_syntax", ("SELECT",), re.compile(r"\bSELECT\b[^;]{1,300}?\bFROM\b")),
    ("c_syntax", ("$",), re.compile(r"\$\{?[A-Za-z_]")),
    ("c_syntax", ("--",), re.compile(r"(?<!\S)--[a-z]")),
    (
        "c_syntax",
        ("public", "private", "protected"),
        re.compile(
            r"\b(?:public|private|protected) (?:static |final |abstract )*"
            r"(?:class|interface|enum|void|int|long|boolean|String)\b"
        ),
    ),
    ("c_lang", ("c++", "c#", "C++", "C#"), None),
    ("c_lang", (" Go", " C"), re.compile(r"\b(?:in|to|with|using) (?:Go|C)\b")),
    ("c_ident", ("()",), re.compile(r"\w\(\)")),
    ("c_ident", ("_",), re.compile(r"[a-z0-9]{2}_[a-z]{2}")),
    ("c_ident", ("O(",), re.compile(r"\bO\([^)]{1,12}\)")),
    ("c_ident", (".",), _SOURCE_FILE),
    ("m_latex", ("\\",), re.compile(r"\\(?:frac|int|sum|sqrt|lim|prod|partial|cdot|infty|pi)")),
    ("m_formula", ("^",), re.compile(r"\b[a-z]\^|\)\^")),
    ("m_formula", ("(",), re.compile(r"\b[fgh]\([a-z]\)")),
    ("m_formula", ("_",), re.compile(r"\b[a-z]_\{?[0-9n]\b")),
    ("m_formula", ("!",), re.compile(r"\d!(?!\w)")),
    ("m_formula", ("P(",), re.compile(r"\bP\([A-Z]")),  # P(A), P(B|A)
    ("m_weak", (", ",), re.compile(r"\d+, \d+, \d+, \d+")),  # a number series: 2, 6, 12, 20
    ("m_formula", ("...",), re.compile(r"\d\.\d+\.\.\.")),  # a recurring decimal: 0.999...
    ("m_formula", ("+", "-", "="), re.compile(r"\b\d+[a-z](?:\^\d+)?\s*[-+=]")),
    ("m_formula", ("\u222b", "\u2211", "\u221a", "\u03c0", "\u2264", "\u2265", "\u2260"), None),
    ("m_strong", ("km/h", "m/s"), None),
    ("m_percent_of", ("%",), re.compile(r"\d\s*%\s*of\s+\$?\d")),
    ("m_weak", ("1 in ",), re.compile(r"\b1 in [\d,]+")),
    ("m_weak", ("prime",), re.compile(r"\bis [\d,]+ (?:a )?prime\b")),
    ("m_arith", ("",), re.compile(r"\d\s*[+*/\u00d7\u00f7^]\s*\(?\d|\d\s+-\s+\d|\d\s*=\s*[-\d(]")),
    ("x_json_literal", ('{"', '{ "', "{\n"), re.compile(r'\{\s*"\w+"\s*[:,}]')),
)
_CAMEL_CASE: Final = re.compile(r"[a-z]{2}[A-Z][a-z]")


_Phrases = dict[str, tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]]


def _keyword_table(
    keywords: Mapping[str, str],
) -> tuple[dict[str, tuple[str, ...]], _Phrases]:
    """word -> its features, and first word -> (the phrase's other words, its features)."""
    words: dict[str, tuple[str, ...]] = {}
    phrases: dict[tuple[str, ...], tuple[str, ...]] = {}
    for feature, alternatives in keywords.items():
        for phrase in alternatives.split("|"):
            parts = tuple(phrase.split(" "))
            if len(parts) == 1:
                words[phrase] = (*words.get(phrase, ()), feature)
            else:
                phrases[parts] = (*phrases.get(parts, ()), feature)
    by_first: dict[str, list[tuple[tuple[str, ...], tuple[str, ...]]]] = {}
    for parts, features in phrases.items():
        by_first.setdefault(parts[0], []).append((parts[1:], features))
    return words, {first: tuple(rest) for first, rest in by_first.items()}


_TABLE: Final = _keyword_table(_KEYWORDS)


def _is_camel_case(text: str) -> bool:
    """A ``lowerCamelCase`` identifier (``useEffect``; not ``iPhone`` or ``YouTube``)."""
    for match in _CAMEL_CASE.finditer(text):
        start = match.start()
        stop = max(0, start - 40)  # bounded: identifiers are short, adversarial text is not
        while start > stop and text[start - 1].isalpha():
            start -= 1
        if text[start].islower() and (start == 0 or not text[start - 1].isalpha()):
            return True
    return False


def _is_short_list(lowered: str) -> bool:
    """A list of short items: "name, title, skills" or "the rent, the deposit and the date"."""
    parts = lowered.split(",")
    last = len(parts) - 1
    for index, part in enumerate(parts[1:], start=1):
        words = part.split()
        if not words:
            continue
        if index < last and len(words) <= 3 and "".join(words).replace("-", "").isalpha():
            return True
        for k in range(1, min(len(words), 5)):
            if words[k] in ("and", "or"):
                if "".join(words[:k]).isalpha():
                    return True
                break
    return False


@final
class RuleClassifier:
    """Deterministic task-type rules; tens of microseconds for an ordinary prompt.

    Rules, first match wins:

    1. **long_context**: the prompt (every message's text and tool results, about four
       characters a token, images not counted) is above ``long_context_tokens`` (default
       8000). Capacity is a hard requirement, so it beats everything else, structured output
       included.
    2. **extraction**: ``options.response_format`` is set, or ``tool_choice`` forces one
       named tool (or is ``"required"`` with exactly one tool), i.e. structured output.
    3. **scores**: the text read is the system prompt's first 2000 characters plus the last
       user message's first 3000 and last 1000 characters (earlier turns are not read, so
       the cost is bounded). Words and phrases match whole lowercase tokens. Each feature
       counts at most once; a type's score is the sum of its features' weights (the full
       word lists are ``_KEYWORDS``):

       - *extraction*: "json" (4); extract/entities/key-value/structured data (4);
         parse/pull out/pick out/normalize/tag the/split these/give me just/return only/
         "fill in this" (3); an inline ``{"field": ...`` template (3); field(s)/column(s)/
         schema/template/csv/yaml/xml/"as a table"/"with keys"/ISO format (2); what to pull
         out: "mentioned in", email addresses, phone numbers, dates, names, amounts,
         deadlines, medications, tracking number, "identify the", "list every", "classify
         each", ... (2); a list of short items, "name, title, skills" or "the rent, the
         deposit and the date" (1.5); a source to read: "from this", "this email", "the
         text below", a quoted passage, text after a colon and a line break (1).
       - *code*: a code fence (4); a traceback, a ``SomethingError``/``Exception`` name,
         segfault or stack trace (4); write/implement/create/build/generate followed within
         five words by function/script/class/parser/query/regex/tests/... (4); code
         syntax: ``def f(``, ``function (``, ``class X:``, ``=>``, ``#include``,
         ``import x`` at a line start, ``const x =``, ``===``, a line ending in ``;``,
         ``obj.method(``, uppercase ``SELECT ... FROM``, ``$VAR``, ``--flag``,
         ``public class`` (3); a language, framework or tool: Python, SQL, CSS, Docker, git,
         AWS, pytest, C++, "in Go"/"in C", and Java/Rust/Swift/Ruby/React/Node only when
         capitalised (3); programming vocabulary: function, bug, refactor, mutex, commit,
         endpoint, database, API, unit test, cache, algorithm, ... (2); identifiers: inline
         backticks, lowerCamelCase, snake_case, ``name()``, a file name with a source
         extension, big-O (2).
       - *math*: LaTeX commands (4); formula syntax: ``x^2``, ``)^n``, ``f(x)``, ``a_n``,
         ``n!``, ``P(A)``, ``3x +``, ``0.999...``, math symbols (3); vocabulary: solve, prove,
         integral, derivative, probability, equation, prime number, matrix, remainder,
         perimeter, hexagon, dice, "how many ways", mph, km/h, ... (3); "17% of 2,340" (3);
         weaker terms: calculate, compute, average, ratio, odds, "chance of", formula,
         divide, "1 in 1000", "is 221 a prime", a series of four numbers (2); arithmetic
         between numbers: ``3/4``, ``9+3``, ``48 ÷ 2``, ``2^100``, ``= 5`` (2); how many/
         how much/how long (1).
       - *creative*: a form: poem, haiku, sonnet, limerick, lyrics, song, story, tale,
         fable, novel, scene, slogan, tagline, jingle, caption, riddle, joke, monologue,
         "wedding toast", ... (4); imagine/pretend/invent/make up/backstory/role-play/rhyme/
         verse/prose/vivid/creative/brainstorm/"in the style of"/"point of view"/
         "dialogue between" (3); funny/witty/catchy/magical/epic/"come up with"/"names
         for"/"continue this"/character (2); write/compose/pen followed by a
         determiner and, within five words, neither a code object nor a practical document
         (email, message, letter, report, summary, essay, instructions, ...) (2).
       - ``extra_keywords[task]``: each given word or phrase (whole words, any case; one
         that is not plain words is matched as a substring) adds 3 to that type, once per
         type; ``"chat"`` keywords are allowed, to pull requests back to chat.

       The highest score wins; ties go to extraction, then code, math, creative, chat.
    4. **chat**: the best score is below 2 (a lone weak hint such as "how many" or a quoted
       passage is not enough), or there is no text to read.

    Measured on ``tests/data/task_prompts.jsonl``: see ``tests/test_classifier.py``, which
    prints the confusion matrix for the tuning items and for the held-out items separately.
    """

    def __init__(
        self,
        *,
        long_context_tokens: int = 8000,
        extra_keywords: Mapping[TaskType, Iterable[str]] | None = None,
    ) -> None:
        if long_context_tokens <= 0:
            raise ValueError(
                f"long_context_tokens: expected an integer > 0, got {long_context_tokens}"
            )
        self.long_context_tokens = long_context_tokens
        self._long_chars = long_context_tokens * _CHARS_PER_TOKEN
        self._weights = _WEIGHTS
        self._words, self._phrases = _TABLE
        self._word_set = frozenset(self._words)
        self._substrings: tuple[tuple[str, str], ...] = ()
        if extra_keywords:
            self._add_keywords(extra_keywords)

    def _add_keywords(self, extra_keywords: Mapping[TaskType, Iterable[str]]) -> None:
        keywords = dict(_KEYWORDS)
        weights = dict(_WEIGHTS)
        substrings: list[tuple[str, str]] = []
        for task, given in extra_keywords.items():
            words = (given,) if isinstance(given, str) else given
            if task not in _PRECEDENCE:
                raise ValueError(
                    f"extra_keywords: expected keys among {', '.join(_PRECEDENCE)}, "
                    f"got {task!r} (long_context is decided by length)"
                )
            feature = f"extra_{task}"
            weights[feature] = (task, _EXTRA_KEYWORD_WEIGHT)
            phrases: list[str] = []
            for word in words:
                lowered = " ".join(word.lower().split())
                if not lowered:
                    continue
                if " ".join(_TOKEN.findall(lowered)) == lowered:
                    phrases.append(lowered)
                else:
                    substrings.append((feature, lowered))
            if phrases:
                keywords[feature] = "|".join(phrases)
        self._weights = weights
        self._words, self._phrases = _keyword_table(keywords)
        self._word_set = frozenset(self._words)
        self._substrings = tuple(substrings)

    def classify(self, request: Request) -> TaskType:
        if _prompt_chars(request.messages, self._long_chars) > self._long_chars:
            return "long_context"
        options = request.options
        if options.response_format is not None:
            return "extraction"
        choice = options.tool_choice
        if isinstance(choice, NamedToolChoice) or (
            choice == "required" and len(options.tools) == 1
        ):
            return "extraction"
        return self.classify_text(_scanned_text(request.messages))

    def classify_text(self, text: str) -> TaskType:
        """Rules 3 and 4 alone, on ``text`` as given (the caller bounds its length)."""
        scores = self.scores(text)
        best: TaskType = "chat"
        best_score = 0.0
        for task in _PRECEDENCE:
            score = scores.get(task, 0.0)
            if score > best_score:
                best, best_score = task, score
        return best if best_score >= _MIN_SCORE else "chat"

    def scores(self, text: str) -> dict[TaskType, float]:
        """Each type's keyword score for ``text``; types that scored nothing are absent."""
        found = self._features(text)
        scores: dict[TaskType, float] = {}
        weights = self._weights
        for feature in found:
            task, weight = weights[feature]
            scores[task] = scores.get(task, 0.0) + weight
        return scores

    def _features(self, text: str) -> set[str]:
        lowered = text.lower()
        tokens = _TOKEN.findall(lowered)
        words = self._words
        phrases = self._phrases
        found: set[str] = set()
        for word in self._word_set.intersection(tokens):
            found.update(words[word])
        for i, token in enumerate(tokens):
            candidates = phrases.get(token)
            if candidates is not None:
                for rest, features in candidates:
                    if tuple(tokens[i + 1 : i + 1 + len(rest)]) == rest:
                        found.update(features)
        if not _VERBS.isdisjoint(tokens):
            for i, token in enumerate(tokens):
                if token not in _VERBS:
                    continue
                following = tokens[i + 1 : i + 6]
                if not _CODE_OBJECTS.isdisjoint(following):
                    if token in _CODE_VERBS:
                        found.add("c_write")
                elif (
                    token in _WRITING_VERBS
                    and following
                    and following[0] in _DETERMINERS
                    and _PRACTICAL_OBJECTS.isdisjoint(following)
                ):
                    found.add("w_write")
        for name in _CASED_NAMES.intersection(tokens):
            if _CASED_LANGUAGES[name] in text:
                found.add("c_lang")
        for feature, needles, pattern in _SYNTAX:
            if feature in found:
                continue
            for needle in needles:
                if needle in text:
                    break
            else:
                continue
            if pattern is None or pattern.search(text) is not None:
                found.add(feature)
        if "c_ident" not in found and (text.count("`") >= 2 or _is_camel_case(text)):
            found.add("c_ident")
        if "," in lowered and _is_short_list(lowered):
            found.add("x_list")
        for feature, needle in self._substrings:
            if needle in lowered:
                found.add(feature)
        return found


def _prompt_chars(messages: tuple[Message, ...], limit: int) -> int:
    """Characters of text in the conversation; stops counting once past ``limit``."""
    total = 0
    for message in messages:
        content = message.content
        if isinstance(content, str):
            total += len(content)
        else:
            for part in content:
                if isinstance(part, TextPart):
                    total += len(part.text)
                elif isinstance(part, ToolResultPart):
                    total += len(part.content)
                elif not isinstance(part, ImagePart):
                    total += len(part.name) + 16 * len(part.arguments)
        if total > limit:
            break
    return total


def _scanned_text(messages: tuple[Message, ...]) -> str:
    """The system prompt's head plus the last user message's head and tail."""
    system = ""
    for message in messages:
        if message.role == "system" and len(system) < _SYSTEM_CHARS:
            system = f"{system}\n{message.text}" if system else message.text
    user = ""
    for message in reversed(messages):
        if message.role == "user":
            user = message.text
            break
    system = system[:_SYSTEM_CHARS]
    if len(user) > _USER_HEAD_CHARS + _USER_TAIL_CHARS:
        user = f"{user[:_USER_HEAD_CHARS]}\n{user[-_USER_TAIL_CHARS:]}"
    return f"{system}\n{user}" if system else user
