"""The built-in taxonomies: exact names from the paper's Tables 1 and 2, and tagging quality.

Quality is measured on a small hand-written evaluation set of realistic tweets (written before the
keyword lists were, as a user would write them: slang, typos, hashtags, no topic names). On-subject
tweets carry the issue a reader would file them under; unrelated tweets (many of them using the
ambiguous words the taxonomies must not fire on alone) must get no topic from either taxonomy.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from affalign.tagging.keywords import KeywordMatcher, normalize_texts
from affalign.taxonomy import load_taxonomy

# Table 1 of the paper (issue -> topics, in the table's order).
COVID_TABLE: dict[str, list[str]] = {
    "Education": [
        "COVID-19 online and remote education",
        "COVID-19 educational institution adaptations",
        "COVID-19 teaching and learning adjustments",
        "COVID-19 education disruptions and responses",
        "COVID-19 early childhood and kindergarten education",
    ],
    "Lockdowns": [
        "COVID-19 lockdown measures and regulations",
        "COVID-19 lockdown responses and protests",
        "COVID-19 business and public service impact",
        "COVID-19 community and personal practices",
        "COVID-19 government and health policies",
    ],
    "Masking": [
        "COVID-19 mask types and features",
        "COVID-19 mask usage and compliance",
        "COVID-19 mask mandates and policies",
        "COVID-19 mask health concerns",
        "COVID-19 mask sanitization and maintenance",
    ],
    "Origins": [
        "COVID-19 natural origin theories",
        "COVID-19 lab leak hypotheses",
        "COVID-19 conspiracy theories",
        "COVID-19 scientific research and personalities",
    ],
    "Vaccines": [
        "COVID-19 vaccine types",
        "COVID-19 vaccine administration",
        "COVID-19 vaccine efficacy and safety",
        "COVID-19 vaccine approval and authorization",
        "COVID-19 vaccine distribution and accessibility",
        "COVID-19 vaccine misinformation",
        "COVID-19 vaccine reporting",
    ],
}

# Table 2 of the paper.
ROE_TABLE: dict[str, list[str]] = {
    "Bodily Autonomy": [
        "abortion rights and access",
        "reproductive rights and body autonomy",
        "pro-choice movement",
        "abortion legal and political debate",
        "forced practices and coercion in reproduction",
        "alternative methods for abortion",
        "historical symbols in abortion debates",
    ],
    "Exceptions to Abortion Bans": [
        "abortion viability and medical exceptions",
        "legal and ethical exceptions in abortion",
        "parental consent in abortion decisions",
        "adoption as an alternative in abortion discussions",
    ],
    "Fetal Rights": [
        "fetal rights debate in abortion",
        "anti-abortion arguments",
        "philosophical and ethical perspectives on abortion",
        "fetal rights advocacy",
        "abortion alternatives and fetal rights",
    ],
    "Religion": [
        "religious beliefs and abortion",
        "christian denominations and abortion",
        "religious practices and abortion",
    ],
    "Women's Health": [
        "women's reproductive rights and abortion",
        "abortion methods and medications",
        "maternal health and abortion",
        "healthcare access and effects in abortion",
        "historical and illegal abortion practices",
    ],
}

TABLES = {"covid": COVID_TABLE, "roe": ROE_TABLE}

EDU, LOCK, MASK, ORIG, VAX = "Education", "Lockdowns", "Masking", "Origins", "Vaccines"
BODY, EXC, FETAL, REL, WH = (
    "Bodily Autonomy",
    "Exceptions to Abortion Bans",
    "Fetal Rights",
    "Religion",
    "Women's Health",
)

# (tweet, acceptable issue(s)): a tweet counts as recalled when it gets a topic of one of them.
COVID_EVAL: list[tuple[str, str | tuple[str, ...]]] = [
    # Education
    ("my kid has been staring at a zoom screen for 6 hrs a day, remote learning is NOT working #OpenSchoolsNow", EDU),
    ("CPS teachers union voted to stay virtual again. parents are furious", EDU),
    ("Proud of our teachers who pivoted to online classes in like a week. heroes", EDU),
    ("universities sending students home mid semester and still charging full tuition during a pandemic lol", EDU),
    ("daycare closed again bc of a covid case in the toddler room, how are working parents supposed to do this", EDU),
    ("Schools should not reopen until teachers are vaccinated. period.", EDU),
    ("hybrid schedule starts monday, half the class in person, half on google meet 🙃 thanks covid", EDU),
    ("kindergarteners learning to read over an ipad during a pandemic is insane to me", EDU),
    ("Learning loss from the school closures is going to haunt this generation", EDU),
    ("my college moved all finals online due to covid-19, no refunds on the dorms obviously", EDU),
    ("Distance learning day 3: my 2nd grader cried twice and the wifi died 😩", EDU),
    # Lockdowns
    ("Day 47 of quarantine and I've baked 9 loaves of banana bread", LOCK),
    ("Governor just extended the stay-at-home order through May. small businesses are done", LOCK),
    ("Reopen America! We the people are done with these tyrannical lockdowns #FreedomOverFear", LOCK),
    ("protesters at the state capitol with guns demanding the gov end the shutdown", LOCK),
    ("our favorite restaurant closed for good after the covid shutdown, 20 yrs in business", LOCK),
    ("curfew at 10pm and only essential businesses open, this is the new normal I guess", LOCK),
    ("social distancing means no bday party for my son this yr, we did a drive-by parade instead", LOCK),
    ("Sweden didn't lock down and they did fine. Lockdowns don't work", LOCK),
    ("shelter in place order issued for the bay area starting midnight", LOCK),
    ("the CDC guidance on gatherings changes every week, who can keep up", LOCK),
    ("Stay home, save lives. Flatten the curve people!!", LOCK),
    # Masking
    ("Wear a damn mask people. It's not that hard #WearAMask", MASK),
    ("N95s are way better than those cloth masks, change my mind", MASK),
    ("guy at costco with his mask under his nose 🙄", MASK),
    ("Masks don't work and they cause CO2 buildup, my kid gets headaches wearing one all day", MASK),
    ("Mask mandate lifted in Texas today. Gov Abbott says it's personal responsibility now", MASK),
    ("How often do you guys wash your reusable face masks? mine are getting nasty", MASK),
    ("maskless crowds at the superbowl party while covid is surging, ugh", MASK),
    ("no mask no service sign at my local grocery store, good", MASK),
    ("anti-maskers screaming at a teenage cashier over a piece of cloth. pathetic", MASK),
    ("my glasses fog up every time I wear my face covering lol any tips", MASK),
    ("ppl refusing to wear there masks in walmart during a pandemic smh", MASK),
    # Origins
    ("The virus came from a lab in Wuhan and Fauci funded gain of function research. Wake up", ORIG),
    (
        "bats -> pangolin -> humans at the wet market is still the most likely explanation for covid per most virologists",
        ORIG,
    ),
    ("The lab leak theory isn't a conspiracy theory anymore, even Biden ordered an intel review", ORIG),
    ("Plandemic was planned by Bill Gates and the globalists #plandemic", ORIG),
    ("5G towers are not spreading the coronavirus, stop burning them down", ORIG),
    ("WHO team visited Wuhan, said lab origin 'extremely unlikely'", ORIG),
    ("Ralph Baric and EcoHealth Alliance have a lot of explaining to do", ORIG),
    ("China virus came from the Wuhan Institute of Virology and they covered it up", ORIG),
    ("zoonotic spillover happens all the time, SARS1 came from civet cats", ORIG),
    ("Peter Daszak shouldn't have been on the WHO origins team, conflict of interest", ORIG),
    # Vaccines
    ("Got my 2nd Pfizer dose today! arm is sore but feeling grateful 💉", VAX),
    ("moderna booster knocked me out for a day but worth it", VAX),
    ("The jab is experimental and the side effects are being hidden. I'll never take it", VAX),
    ("FDA grants emergency use authorization for J&J vaccine", VAX),
    ("finally found a vax appointment at a CVS 40 miles away, the rollout is a mess", VAX),
    ("VAERS reports show thousands of deaths, why isn't the media covering this", VAX),
    ("vaccine mandates for federal workers announced today. thoughts?", VAX),
    ("Pfizer vaccine is 95% effective in preventing symptomatic infection per the trial data", VAX),
    ("Breakthrough infections are happening but the vaccinated rarely end up in the ICU", VAX),
    ("Bill Gates microchips in the vaccine lol people actually believe this", VAX),
    ("mRNA doesn't change your DNA, please stop sharing that garbage", VAX),
    ("Kids 5-11 can now get the shot! booked my daughter's appointment", VAX),
    ("fully vaxxed and boosted, see y'all at the bar 🍻", VAX),
]

ROE_EVAL: list[tuple[str, str | tuple[str, ...]]] = [
    # Bodily Autonomy
    ("My body, my choice. Keep your laws off my uterus #RoeVWade", BODY),
    ("abortion is healthcare and access shouldn't depend on your zip code", BODY),
    ("Planned Parenthood clinic in our town is closing after the ruling, nearest one is 300 miles away", BODY),
    ("SCOTUS just overturned Roe. 50 years of precedent gone. I'm shaking", BODY),
    ("Bans off our bodies march this saturday downtown, bring water and signs", BODY),
    ("the Handmaid's Tale was supposed to be a warning not an instruction manual", BODY),
    ("Mailing abortion pills across state lines is going to be the next battleground", (BODY, WH)),
    ("coat hangers are a symbol for a reason. we won't go back #wewontgoback", BODY),
    ("forced birth is state-sanctioned violence against women", BODY),
    ("the Dobbs decision leaked and Alito's draft is terrifying", BODY),
    # Exceptions to Abortion Bans
    ("A 10 year old rape victim had to travel to Indiana for an abortion. Ohio has no exceptions", EXC),
    ("Even most pro-lifers support exceptions for rape, incest, and the life of the mother", EXC),
    ("Ectopic pregnancies are never viable and treating them is not optional. These bans kill", EXC),
    ("Texas heartbeat bill bans abortion at 6 weeks, before most women even know they're pregnant", EXC),
    ("Parental consent laws for minors seeking abortions put abused teens in danger", EXC),
    ("Adopt don't abort. There are thousands of families waiting to adopt", EXC),
    ("doctors are waiting until women are septic before intervening bc of vague exception language", EXC),
    ("15-week ban with exceptions for medical emergencies is a reasonable compromise", EXC),
    ("fetal anomalies incompatible with life - forcing her to carry to term is cruel", EXC),
    # Fetal Rights
    ("A heartbeat is a heartbeat. Life begins at conception #prolife", FETAL),
    ("Unborn babies deserve rights too. #ProLifeGeneration", FETAL),
    ("fetal personhood laws would make IVF illegal, think about that", FETAL),
    ("the unborn can feel pain at 15 weeks, science says so", FETAL),
    ("abortion is murder of an innocent human being. period.", FETAL),
    ("if a fetus isn't a person why is it double homicide when a pregnant woman is killed?", FETAL),
    ("Crisis pregnancy centers lie to women about their options", (FETAL, WH)),
    ("Embryos are not babies. A clump of cells is not a child.", FETAL),
    ("Every child deserves a chance at life. Choose life 💕", FETAL),
    ("heading to DC for the March for Life this weekend, pray for us!", FETAL),
    # Religion
    ("Catholic bishops want to deny communion to Biden over his abortion stance", REL),
    ("My Christian faith tells me every life is sacred from the womb. Psalm 139", REL),
    ("Stop forcing your religion on my body. Not everyone is Christian", REL),
    (
        "Jewish law actually permits abortion when the mother's life is at risk, so these bans violate religious freedom",
        REL,
    ),
    ("praying outside the clinic every Saturday. God sees every unborn child 🙏", REL),
    ("Southern Baptists celebrate the Dobbs ruling", REL),
    ("the separation of church and state means your bible doesn't get to decide my healthcare", REL),
    ("the pope called abortion hiring a hitman. strong words", REL),
    # Women's Health
    ("Mifepristone is safer than Tylenol. Stop restricting it", WH),
    ("Maternal mortality in the US is already the worst in the developed world and now this", WH),
    ("women are going to die from back alley abortions again", WH),
    ("Plan B is not an abortion pill. Educate yourselves before you stock up or ban it", WH),
    ("Post-Roe, OB-GYNs are leaving red states. Who's going to deliver babies?", WH),
    ("women with miscarriages being denied D&C procedures because doctors are afraid of prosecution", WH),
    ("Black women die in childbirth at 3x the rate of white women. Reproductive justice now", WH),
    ("Medication abortion via telehealth is safe and effective according to ACOG", WH),
    ("IUDs and birth control are next, they're already talking about Griswold", (WH, BODY)),
]

# Tweets that are about none of the ten issues; many use words that are ambiguous outside them.
UNRELATED: list[str] = [
    "Got my flu shot today at Walgreens, reminder to get yours!",
    "Steph Curry with the shot at the buzzer!!! unreal",
    "Halloween costume ideas: scary masks, witch hats, the usual",
    "our chemistry lab blew up today lmao (nobody got hurt)",
    "the school play is tonight, so proud of my daughter",
    "The president's mandate from the voters was clear after that landslide",
    "Restaurant choice for date night: sushi or tacos?",
    "Sunday service at church was beautiful this morning",
    "The pill bottle says take two daily with food",
    "Life is good, beach day with the fam ☀️",
    "Closed for the holidays, see you in January! - the management",
    "Recipe: sourdough bread with a crispy crust, 20 min prep",
    "Lakers lost again, LeBron can't do it alone",
    "Just finished a 5k run, new personal best 🏃",
    "Lockdown defense by the Celtics in the 4th quarter was insane",
    "schools closed tomorrow bc of the snowstorm, enjoy the snow day kids ❄️",
    "ski masks and gloves on sale at REI this weekend",
    "The vaccine for my dog's rabies is due next week",
    "Wade into the water slowly, it's cold",
    "Roe deer spotted in the back field this morning 🦌",
    "The movie's plot twist: she was adopted all along",
    "Adopt a shelter dog today! 🐶 #adoptdontshop",
    "My sister is pregnant with twins!! so excited to be an aunt",
    "Heartbeat of the city at night, neon lights everywhere",
    "Baby shower this weekend, need gift ideas",
    "Supreme Court hears arguments on the EPA case today",
    "Mother's Day brunch was lovely, thanks babe",
    "Maternal health clinics in rural Kenya get new funding from an NGO",
    "Our church bake sale raised $500 for the food bank!",
    "Praying for my grandma's surgery tomorrow 🙏",
    "Remote work is the best thing that ever happened to my mental health",
    "teacher appreciation week! thank you mrs. johnson",
    "online classes at the community college for my coding certificate start monday",
    "Zoom call with the team at 3, don't be late",
    "The virus on my laptop deleted all my photos",
    "Bat signal is up, Gotham needs you",
    "The stock markets are closed on Monday for the holiday",
    "Wet market in Bangkok has the best street food",
    "5G coverage finally reached our small town!",
    "Bill Gates donated another billion to malaria research",
    "Just took a pregnancy test... it's positive!! 😭❤️",
    "my mom's choice of music on road trips is questionable",
    "Christian Bale was incredible in that movie",
    "catholic school uniforms are so ugly lol",
    "the mask scene in Phantom of the Opera gives me chills",
    "curfew for my teenager is 11pm on weekends",
    "Getting my blood drawn at the lab tomorrow morning, fasting 12 hrs 😩",
    "Amazing sermon on forgiveness today at First Baptist",
    "the plan b for the weekend if it rains is a movie marathon",
    "Anyone know where to buy wooden coat hangers? my closet is a disaster",
    "field trip permission slip needs parental consent by friday",
    "Sunday self care: bubble bath + a sheet face mask 🧖‍♀️",
    "my kindergartener lost her first tooth today!!",
    "Big storm coming, stores are closed and the governor declared a state of emergency",
]

MIN_RECALL = 0.85
MAX_FALSE_POSITIVE_RATE = 0.05


@pytest.fixture(scope="module")
def taxonomies():
    return {name: load_taxonomy(name) for name in TABLES}


@pytest.fixture(scope="module")
def matchers(taxonomies):
    return {name: KeywordMatcher(tax) for name, tax in taxonomies.items()}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_issue_and_topic_names_match_the_paper(taxonomies, name):
    tax = taxonomies[name]
    table = TABLES[name]
    assert tax.dataset == name
    assert list(tax.issues) == list(table)
    assert tax.topic_names == [t for topics in table.values() for t in topics]
    assert {t.name: t.issue for t in tax.topics} == {t: issue for issue, topics in table.items() for t in topics}


def test_topic_counts_match_the_paper(taxonomies):
    assert len(taxonomies["covid"].issues) == 5
    assert len(taxonomies["covid"].topics) == 26
    assert len(taxonomies["roe"].issues) == 5
    assert len(taxonomies["roe"].topics) == 24
    assert all(t.startswith("COVID-19 ") for t in taxonomies["covid"].topic_names)


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_topic_has_a_rich_keyword_list_and_a_signature_keyword(taxonomies, matchers, name):
    tax, matcher = taxonomies[name], matchers[name]
    assert len(tax.context) >= 8
    for topic in tax.topics:
        terms = topic.keywords + topic.context_keywords
        assert len(terms) >= 12, f"{topic.name}: only {len(terms)} keywords"
        normalized = normalize_texts(pa.array(list(terms), pa.string())).to_pylist()
        assert all(n.strip() for n in normalized), f"{topic.name}: a keyword normalises to nothing"
        # Some keyword on its own tags this topic and no other ("signature" keywords: synthetic
        # corpora are built from them, and a topic without one could never be told apart).
        tagged = matcher.tag(list(topic.keywords))
        assert [topic.name] in tagged, f"{topic.name}: no keyword tags this topic alone"
        # Every strong keyword tags its own topic.
        missing = [kw for kw, got in zip(topic.keywords, tagged, strict=True) if topic.name not in got]
        assert not missing, f"{topic.name}: keywords that do not tag it: {missing}"


@pytest.mark.parametrize("name", sorted(TABLES))
def test_builtin_taxonomy_files_state_their_provenance(name):
    from importlib import resources

    import yaml

    doc = yaml.safe_load(resources.files("affalign.data.taxonomies").joinpath(f"{name}.yaml").read_text("utf-8"))
    assert doc["dataset"] == name
    assert doc["description"].strip()
    assert "A.1" in doc["provenance"]


def _recall(matcher, tax, evalset):
    issue_of = {t.name: t.issue for t in tax.topics}
    misses = []
    for text, expected in evalset:
        expected = (expected,) if isinstance(expected, str) else expected
        issues = {issue_of[t] for t in matcher.tag([text])[0]}
        if not issues & set(expected):
            misses.append((text, sorted(issues)))
    return 1 - len(misses) / len(evalset), misses


def test_eval_set_covers_every_issue():
    for evalset, table in ((COVID_EVAL, COVID_TABLE), (ROE_EVAL, ROE_TABLE)):
        for issue in table:
            n = sum(1 for _, exp in evalset if issue in ((exp,) if isinstance(exp, str) else exp))
            assert n >= 5, f"{issue}: only {n} eval tweets"
        for _, exp in evalset:
            assert set((exp,) if isinstance(exp, str) else exp) <= set(table)
    assert len(COVID_EVAL) + len(ROE_EVAL) >= 60
    assert len(UNRELATED) >= 40


@pytest.mark.parametrize("name,evalset", [("covid", COVID_EVAL), ("roe", ROE_EVAL)])
def test_issue_recall_on_realistic_tweets(taxonomies, matchers, name, evalset):
    recall, misses = _recall(matchers[name], taxonomies[name], evalset)
    print(f"{name}: issue recall {recall:.3f} on {len(evalset)} tweets; misses: {misses}")
    assert recall >= MIN_RECALL, f"{name} recall {recall:.3f}; missed: {misses}"


def test_unrelated_tweets_get_no_topic(matchers):
    hits = []
    for text in UNRELATED:
        for name, matcher in matchers.items():
            topics = matcher.tag([text])[0]
            if topics:
                hits.append((name, text, topics))
    fpr = len({text for _, text, _ in hits}) / len(UNRELATED)
    print(f"false-positive rate {fpr:.3f} on {len(UNRELATED)} unrelated tweets; hits: {hits}")
    assert fpr <= MAX_FALSE_POSITIVE_RATE, f"false-positive rate {fpr:.3f}: {hits}"


def test_datasets_do_not_bleed_into_each_other(matchers):
    """An abortion tweet rarely gets a COVID-19 topic, and the reverse."""
    covid_on_roe = [t for t, _ in ROE_EVAL if matchers["covid"].tag([t])[0]]
    roe_on_covid = [t for t, _ in COVID_EVAL if matchers["roe"].tag([t])[0]]
    assert len(covid_on_roe) <= 0.1 * len(ROE_EVAL), covid_on_roe
    assert len(roe_on_covid) <= 0.1 * len(COVID_EVAL), roe_on_covid


# --- misfiles found on real tweets (issue 12) ------------------------------------------------------
# An interjection, an idiom, a slur or a word in another sense must not file a tweet under a topic
# whose meaning it does not carry. Each case names topics the tweet must NOT get (and, where the
# tweet is on an issue, one issue it must keep, so the fix is not "tag nothing").
MISFILES: list[tuple[str, str, set[str], str | None]] = [
    ("roe", "Supreme Court overturned Roe v. Wade. What the hell?!", set(ROE_TABLE["Religion"]), "Bodily Autonomy"),
    ("roe", "oh my god, they really overturned Roe", set(ROE_TABLE["Religion"]), "Bodily Autonomy"),
    ("roe", "Thoughts and prayers won't fix this. Codify Roe now.", set(ROE_TABLE["Religion"]), "Bodily Autonomy"),
    ("roe", "Mass shootings every week and the GOP only cares about abortion bans", set(ROE_TABLE["Religion"]), "Bodily Autonomy"),
    ("roe", "Women's lives are at risk now that Roe is gone", {"anti-abortion arguments"}, "Bodily Autonomy"),
    ("roe", "Abortion is now illegal in Texas", {"historical and illegal abortion practices"}, "Bodily Autonomy"),
    ("roe", "As a parent of two girls, the Dobbs decision terrifies me", {"parental consent in abortion decisions"}, "Bodily Autonomy"),
    ("roe", "Your argument makes no sense. Abortion is healthcare.", {"philosophical and ethical perspectives on abortion"}, None),
    (
        "roe",
        "I'm on birth control pills and now I'm scared they'll come for them too after Roe",
        {"abortion methods and medications", "anti-abortion arguments"},
        "Bodily Autonomy",
    ),
    ("covid", "Trump's approval rating dropped again during the pandemic", set(COVID_TABLE["Vaccines"]), None),
    ("covid", "Masks are effective at stopping covid", set(COVID_TABLE["Vaccines"]), "Masking"),
    ("covid", "My covid test results from the lab came back negative", set(COVID_TABLE["Origins"]), None),
    ("covid", "BLM protests filled the streets during the pandemic", {"COVID-19 lockdown responses and protests"}, None),
    ("covid", "Need a shot of tequila after this quarantine week", set(COVID_TABLE["Vaccines"]), None),
    ("covid", "Hydroxychloroquine and ivermectin are the cure for covid", set(COVID_TABLE["Vaccines"]), None),
    ("covid", "The China virus is spreading everywhere", {"COVID-19 natural origin theories"}, None),
    ("covid", "kung flu is here, stock up on toilet paper", {"COVID-19 natural origin theories"}, None),
]

# Sentences the old context gate dropped or the old lists missed; they must get the topic named.
MUST_TAG: list[tuple[str, str, str]] = [
    ("covid", "Just got vaccinated!", "COVID-19 vaccine administration"),
    ("roe", "SCOTUS just took away our rights", "abortion legal and political debate"),
    ("covid", "Our district is going fully remote for the rest of the semester because of covid", "COVID-19 online and remote education"),
    ("covid", "So many people lost their jobs during the pandemic shutdown", "COVID-19 business and public service impact"),
    ("roe", "Just to clarify, you do know a D&amp;C is an abortion. Right?", "abortion methods and medications"),
]


@pytest.mark.parametrize("name,text,forbidden,keep", MISFILES)
def test_words_in_another_sense_do_not_file_a_tweet_under_a_topic(taxonomies, matchers, name, text, forbidden, keep):
    assert forbidden <= set(taxonomies[name].topic_names), forbidden - set(taxonomies[name].topic_names)
    got = matchers[name].tag([text])[0]
    assert not set(got) & forbidden, f"{text!r} -> {got}"
    if keep is not None:
        assert keep in {taxonomies[name].issue_of(t) for t in got}, f"{text!r} lost its issue {keep}: {got}"


@pytest.mark.parametrize("name,text,topic", MUST_TAG)
def test_sentences_the_old_gate_dropped_are_tagged(taxonomies, matchers, name, text, topic):
    assert topic in taxonomies[name].topic_names
    assert topic in matchers[name].tag([text])[0]


def test_naming_slurs_are_not_keywords_of_any_topic(taxonomies):
    """'china virus' and 'kung flu' are used mostly by one side: as keywords they would push that side's tweets into a topic."""
    slurs = {"china virus", "chinese virus", "wuhan virus", "kung flu", "#chinavirus", "#kungflu", "#wuhanvirus"}
    for tax in taxonomies.values():
        for topic in tax.topics:
            terms = {k.lower() for k in (*topic.keywords, *topic.context_keywords, *topic.fallback_keywords)}
            assert not terms & slurs, f"{topic.name}: {terms & slurs}"
