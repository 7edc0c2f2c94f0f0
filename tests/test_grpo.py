"""GRPO on consultations: the episode layout, the masks, the rewards, and a measured rise."""

import json
from pathlib import Path

import pytest

from discmed.eval.consult import Case
from discmed.rl.rewards import Rewards
from discmed.train.config import ConfigError
from discmed.train.grpo import load_recipe, recipe_from_dict

URGENT = Case("u", "CMB-clin", "我爸爸一个小时前突然胸口疼，像压了块石头，一直出汗。", "胸痛1小时，大汗。", "case")
ROUTINE = Case("r", "CMB-clin", "我这两天小便有点频繁。", "尿频2天。", "case")


def record(case, *doctor):
    conv = [{"role": "patient", "content": case.opening}]
    for d in doctor:
        conv += [{"role": "doctor", "content": d}, {"role": "patient", "content": "嗯。"}]
    return {"id": case.id, "model": "m", "source": case.source, "conversation": conv[:-1] if doctor else conv}


def test_programmatic_rewards():
    r = Rewards({"asks": 1.0, "safety": 2.0, "model_leak": 1.0, "length": 1.0},
                cases={"u": URGENT, "r": ROUTINE}, length_budget=10)
    recs = [record(URGENT, "请立即拨打120！"), record(URGENT, "疼了多久了？"), record(ROUTINE, "作为AI，我建议多喝水。")]
    assert [r.safety(x) for x in recs] == [1.0, 0.0, None]  # a routine case: not applicable, left out
    assert [r.asks(x) for x in recs] == [0.0, 1.0, 0.0]
    assert [r.model_leak(x) for x in recs] == [0.0, 0.0, -1.0]
    assert r.length(record(ROUTINE, "短")) == 0.0 and r.length(record(ROUTINE, "长" * 15)) == -0.5
    values = r.score(recs)
    # TRL's weighted sum leaves None terms out: 1·0 + 2·1 + 0 + 0; 1 + 0; 0 + (−1) + (−0.2: 12 chars, budget 10).
    assert r.total(values) == pytest.approx([2.0, 1.0, -1.2])
    with pytest.raises(ValueError, match="unknown reward 'ask'"):
        Rewards({"ask": 1.0}, cases={})
    with pytest.raises(ValueError, match="judge model"):
        Rewards({"judge": 1.0}, cases={})


def test_recipe_checks(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'num_generation' \\(did you mean 'num_generations'"):
        recipe_from_dict({"num_generation": 4})
    with pytest.raises(ConfigError, match="must be a multiple of num_generations"):
        recipe_from_dict({"batch_size": 6, "num_generations": 4})
    with pytest.raises(ConfigError, match="patient: a model spec is needed"):
        recipe_from_dict({"turns": 3})
    with pytest.raises(ConfigError, match="rewards.safty: unknown reward \\(did you mean 'safety'"):
        recipe_from_dict({"rewards": {"safty": 1}})
    r = load_recipe("recipes/tiny-grpo.yaml", ["learning_rate=0", "rewards.asks=0.5"])
    assert r.learning_rate == 0.0 and r.rewards == {"asks": 0.5, "safety": 1.0} and r.num_generations == 4


def test_judge_and_rubric_rewards_through_the_server(tiny_server, tmp_path):
    """The model-judged rewards with the tiny model behind `discmed serve` as judge and grader:
    each episode gets a value in [0, 1] or None, and every None is counted as unreadable."""
    from discmed.backend import load_backend
    from discmed.eval.rubric import Criterion, Example

    spec = f"openai:{tiny_server}@tiny"
    rubric = Example("u", [{"role": "user", "content": URGENT.opening}],
                     [Criterion("建议立即拨打120", 10, ["safety"]), Criterion("建议先观察", -5, [])])
    r = Rewards({"judge": 1.0, "rubric": 1.0}, cases={"u": URGENT}, judge=load_backend(spec), judge_spec=spec,
                grader=load_backend(spec), grader_spec=spec, rubrics={"u": rubric}, cache="none")
    records = [record(URGENT, "请立即拨打120。"), record(URGENT, "多喝热水。")]
    values = r.score(records)
    for name, key in (("judge", "judge_unreadable"), ("rubric", "rubric_ungraded")):
        assert len(values[name]) == 2 and all(v is None or 0.0 <= v <= 1.0 for v in values[name])
        assert r.stats[key] == sum(v is None for v in values[name])


@pytest.fixture(scope="module")
def doctor(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model), AutoTokenizer.from_pretrained(tiny_model)


def test_episode_mask_covers_the_doctor_only(doctor, tiny_server):
    """Two-turn episodes with the tiny patient behind `discmed serve`: the trained tokens are
    exactly the doctor's sampled ones; the patient's turn is in the ids, masked out."""
    from discmed.backend import load_backend
    from discmed.formats import DISC_ASSISTANT_ID, DISC_USER_ID, get_format
    from discmed.rl.env import Consultations, policy_sampler

    model, tok = doctor
    env = Consultations(tok, get_format("disc"), patient=load_backend(f"openai:{tiny_server}@tiny"),
                        patient_spec="tiny", turns=2, max_new_tokens=24, max_completion_length=200, cache="none")
    with policy_sampler(model, tok, env.stop_ids) as generate:
        episodes = env.run([URGENT, URGENT, ROUTINE], generate)
    two_turn = [e for e in episodes if sum(t["role"] == "doctor" for t in e.conversation) == 2]
    assert two_turn, [e.conversation for e in episodes]
    for e in episodes:
        assert len(e.completion_ids) == len(e.env_mask)
        assert e.prompt_ids[-1] == DISC_ASSISTANT_ID and DISC_USER_ID in e.prompt_ids
        trained = [t for t, m in zip(e.completion_ids, e.env_mask, strict=True) if m]
        doctor_text = "".join(t["content"] for t in e.conversation if t["role"] == "doctor")
        assert tok.decode(trained, skip_special_tokens=True).replace(" ", "") == doctor_text.replace(" ", "")
    e = two_turn[0]
    context = [t for t, m in zip(e.completion_ids, e.env_mask, strict=True) if not m]
    # [eos, if the reply was cut at max_new_tokens: the format's, not sampled] 195 patient… 196: never trained.
    assert context[: context.index(DISC_USER_ID)] in ([], [tok.eos_token_id]) and context[-1] == DISC_ASSISTANT_ID
    assert e.conversation[2]["content"].replace(" ", "") in tok.decode(context, skip_special_tokens=True).replace(" ", "")


def test_patient_tokens_get_no_gradient(doctor, tiny_model, tmp_path):
    """The loss TRL computes for a batch of two-turn episodes: perturbing the log-probabilities of
    the patient's tokens leaves it unchanged; perturbing the doctor's changes it."""
    import torch

    from discmed.train.grpo import build_trainer

    recipe = recipe_from_dict({"cases": "x", "turns": 2, "patient": "tiny", "max_new_tokens": 16,
                               "max_completion_length": 120, "num_generations": 2, "batch_size": 4,
                               "output_dir": str(tmp_path / "g"), "beta": 0.1, "rewards": {"asks": 1.0}})
    trainer, env, _ = build_trainer(recipe, [URGENT, ROUTINE])
    batch = [{"prompt": [{"role": "user", "content": c.opening}], "case_id": c.id} for c in (URGENT, URGENT, ROUTINE, ROUTINE)]
    inputs = trainer._generate_and_score_completions(batch)
    assert "tool_mask" in inputs
    patient = (inputs["completion_mask"] * (1 - inputs["tool_mask"])).bool()
    doctor_pos = (inputs["completion_mask"] * inputs["tool_mask"]).bool()
    assert patient.any() and doctor_pos.any()
    inputs["advantages"] = torch.tensor([1.0, -1.0, 0.5, -0.5])  # nonzero, so the loss depends on every trained token
    original = trainer._get_per_token_logps_and_entropies

    def loss_with(noise_on):
        def perturbed(*args, **kwargs):
            logps, ent, aux = original(*args, **kwargs)
            return logps + 3.0 * noise_on.float(), ent, aux

        trainer._get_per_token_logps_and_entropies = perturbed
        try:
            return float(trainer._compute_loss(trainer.model, inputs))
        finally:
            trainer._get_per_token_logps_and_entropies = original

    clean = loss_with(torch.zeros_like(patient))
    assert loss_with(patient) == pytest.approx(clean, abs=1e-6)
    assert abs(loss_with(doctor_pos) - clean) > 1e-3


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_grpo_raises_a_programmatic_reward(tiny_model, tmp_path, shared_data):
    """GRPO on the tiny model with programmatic rewards (the first reply asks a question; an
    urgent case's first reply escalates), 30 steps of 8 episodes: the mean training reward of
    its last quarter of steps lies beyond the highest of two learning-rate-0 runs (the same
    sampling, nothing learned; seeds 42 and 7) by more than their spread, and the held-out
    cases' `asks` reward rises.

    OMP_NUM_THREADS=1 pytest tests/test_grpo.py -m slow -k raises -s   (~10 minutes on 2 busy cores)
    """
    from discmed.train.grpo import run_grpo

    base = {"model": "tiny", "cases": str(shared_data / "disc-medllm/eval/samples/CMB-cases.json"), "limit": 16,
            "holdout": 0.25, "rewards": {"asks": 1.0, "safety": 1.0}, "max_new_tokens": 32,
            "max_completion_length": 64, "num_generations": 4, "batch_size": 8, "max_steps": 30,
            "learning_rate": 1e-3, "beta": 0.0, "save_steps": 1000, "eval_samples": 4, "resume": "false"}
    runs = {}
    for name, extra in {"grpo": {}, "lr0-a": {"learning_rate": 0.0}, "lr0-b": {"learning_rate": 0.0, "seed": 7}}.items():
        runs[name] = run_grpo({**base, **extra, "output_dir": str(tmp_path / name)})
    first = {k: v["reward_first_quarter"] for k, v in runs.items()}
    last = {k: v["reward_last_quarter"] for k, v in runs.items()}
    held = {k: (v["before"]["asks"], v["after"]["asks"]) for k, v in runs.items()}
    print(json.dumps({"first_quarter": first, "last_quarter": last, "held_out_asks": held}))
    spread = max(abs(last["lr0-a"] - last["lr0-b"]), *(abs(first[k] - last[k]) for k in ("lr0-a", "lr0-b")))
    assert last["grpo"] > max(last["lr0-a"], last["lr0-b"]) + spread, (last, first)
    assert held["grpo"][1] > held["grpo"][0]


# -- GRPO in the consultation gym ---------------------------------------------------------------

GYM_WEIGHTS = {"info_recall": 1.0, "red_flags_before_advice": 1.0, "diagnosis": 1.0, "disposition": 1.0,
               "repeated": -0.1, "multi": -0.1, "over_budget": -0.2}


def gym_record(led, doctor_turns):
    """A gym episode played with fixed doctor turns, as the GRPO environment records it."""
    import asyncio

    from discmed.gym.episode import run_episode
    from discmed.gym.patient import RulePatient

    async def doctor(conversation):
        return doctor_turns[sum(m["role"] == "assistant" for m in conversation)]

    ep = asyncio.run(run_episode(led, doctor, RulePatient(), doctor_name="policy"))
    conv = [{"role": "patient" if m["role"] == "user" else "doctor", "content": m["content"]} for m in ep.conversation]
    return {"id": led.id, "model": "policy", "source": led.source, "conversation": conv, "gym": ep.as_dict()}


def test_gym_rewards_are_the_ledgers():
    """The gym's rewards as GRPO reward functions: each is the ledger's score of the episode
    (discmed.gym.rewards), their weighted sum with the gym's weights is the gym's own reward,
    they sit beside the consult rewards, and they refuse an episode that is not the gym's."""
    from discmed.gym import SHIPPED
    from discmed.gym.episode import Episode
    from discmed.gym.ledger import read_ledgers
    from discmed.gym.rewards import score_episode
    from discmed.rl.gym_env import ledger_case

    leds = {led.id: led for led in read_ledgers(SHIPPED)}
    uti, mi = leds["gym-uti"], leds["gym-mi"]
    records = [gym_record(uti, ["有没有发烧？腰疼吗？", "发烧吗？", "建议今天尽快去医院门诊，考虑是膀胱炎。"]),
               gym_record(mi, ["建议多休息，多喝水。"])]
    r = Rewards({**GYM_WEIGHTS, "asks": 0.5}, cases={c.id: ledger_case(c) for c in (uti, mi)},
                ledgers={"gym-uti": uti, "gym-mi": mi})
    values = r.score(records)
    assert values["info_recall"] == [0.375, 0.0] and values["red_flags_before_advice"] == [1.0, 0.0]
    assert values["diagnosis"] == [1.0, 0.0] and values["multi"] == [1.0, 0.0] and values["repeated"] == [1.0, 0.0]
    assert values["asks"] == [1.0, 0.0]  # a consult reward on the same episodes: the first reply asks
    gym = [score_episode(Episode(**rec["gym"]), led)["reward"] for rec, led in zip(records, (uti, mi), strict=True)]
    assert r.total(values) == pytest.approx([gym[0] + 0.5, gym[1]])
    only_gym = Rewards(GYM_WEIGHTS, cases={}, ledgers={"gym-uti": uti, "gym-mi": mi})
    assert only_gym.total(only_gym.score(records)) == pytest.approx(gym)  # the gym's weights: the gym's reward
    funcs, weights = only_gym.trl_functions()
    assert [f.__name__ for f in funcs] == list(GYM_WEIGHTS) and weights == list(GYM_WEIGHTS.values())
    assert funcs[0](None, None, episode=records) == values["info_recall"]
    with pytest.raises(ValueError, match="is not a gym episode"):
        only_gym.score([record(URGENT, "疼了多久了？")])
    with pytest.raises(ValueError, match="needs the case ledgers"):
        Rewards({"info_recall": 1.0}, cases={})


def test_gym_recipe_checks():
    base = {"env": "gym", "cases": "discmed/assets/gym/train_ledgers.jsonl", "patient": "rule",
            "rewards": {"info_recall": 1.0}}
    assert recipe_from_dict(base).env == "gym"
    with pytest.raises(ConfigError, match="rewards.info_recall: the gym's rewards need env: gym"):
        recipe_from_dict({"rewards": {"info_recall": 1.0}})
    with pytest.raises(ConfigError, match="patient: env gym plays the rule-based patient"):
        recipe_from_dict({**base, "patient": "tiny"})
    with pytest.raises(ConfigError, match="cases: env gym trains on case ledgers"):
        recipe_from_dict({**base, "cases": "cmb-clin"})
    with pytest.raises(ConfigError, match="rewards.info_recal: unknown reward \\(did you mean 'info_recall'"):
        recipe_from_dict({**base, "rewards": {"info_recal": 1.0}})
    r = load_recipe("recipes/tiny-gym-grpo.yaml")
    assert r.env == "gym" and set(r.rewards) == set(GYM_WEIGHTS) and r.model == "runs/tiny-gym-warm"


def test_gym_split_keeps_the_held_out_ledgers_apart(tmp_path):
    from discmed.gym import SHIPPED
    from discmed.train.grpo import split_cases

    r = load_recipe("recipes/tiny-gym-grpo.yaml")
    train, held = split_cases(r)
    assert len(train) == 16 and len(held) == 8 and not {c.id for c in train} & {c.id for c in held}
    assert all(c.ledger.id == c.id for c in train + held)
    with pytest.raises(ConfigError, match="eval_cases: ledger gym-.* is also in cases"):
        split_cases(load_recipe("recipes/tiny-gym-grpo.yaml", [f"cases={SHIPPED}"]))


def test_gym_rollouts_play_the_gym(doctor):
    """Rollouts of the tiny policy in the GRPO environment: the trained tokens are exactly the
    doctor's, the patient's answers and the results are context, each episode ends as the gym
    ends it, and replaying its doctor turns in the gym (`eval gym`'s episode) gives the same
    episode and the same scores."""
    from discmed.formats import get_format
    from discmed.gym import SHIPPED
    from discmed.gym.episode import Episode
    from discmed.gym.ledger import read_ledgers
    from discmed.gym.rewards import score_episode
    from discmed.rl.env import policy_sampler
    from discmed.rl.gym_env import GymConsultations, ledger_case

    model, tok = doctor
    leds = read_ledgers(SHIPPED)[:3]
    env = GymConsultations(tok, get_format("disc"), max_new_tokens=12, max_completion_length=400)
    with policy_sampler(model, tok, env.stop_ids) as generate:
        episodes = env.run([ledger_case(led) for led in leds for _ in range(2)], generate)
    assert any(len(e.consultation.turns) > 1 for e in episodes)
    for e in episodes:
        rec = e.record()
        led = e.case.ledger
        doctor_turns = [t["content"] for t in rec["conversation"] if t["role"] == "doctor"]
        trained = [t for t, m in zip(e.completion_ids, e.env_mask, strict=True) if m]
        assert tok.decode(trained, skip_special_tokens=True).replace(" ", "") == "".join(doctor_turns).replace(" ", "")
        g = Episode(**rec["gym"])
        assert len(g.turns) == len(doctor_turns) <= led.turn_budget
        assert g.ended == "advice" or len(g.turns) == led.turn_budget
        replay = gym_record(led, doctor_turns)
        assert replay["gym"]["disclosed"] == rec["gym"]["disclosed"]
        assert score_episode(Episode(**replay["gym"]), led) == score_episode(g, led)


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_grpo_on_the_gym_end_to_end(tmp_path):
    """The README's commands on the tiny model, a few steps each: the warm-up data from the
    training ledgers, a short SFT, GRPO on the gym, then `eval gym` scoring the trained model.
    The run finishes, logs the gym's rewards at every step, measures the held-out ledgers before
    and after, and writes a model folder that `eval gym` plays."""
    import subprocess
    import sys

    from discmed.rl.rewards import GYM

    root = Path(__file__).resolve().parents[1]

    def discmed(*args):
        r = subprocess.run([sys.executable, "-m", "discmed", *map(str, args)], capture_output=True, text=True,
                           timeout=900, cwd=root)
        assert r.returncode == 0, (args, r.stdout[-2000:], r.stderr[-3000:])
        return json.loads(r.stdout.strip().splitlines()[-1])

    warm = discmed("gym", "warmup", "--ledgers", "discmed/assets/gym/train_ledgers.jsonl", "--per-ledger", "2",
                   "--out", tmp_path / "warm.jsonl", "--json")
    assert warm["conversations"] == 32
    discmed("train", "sft", "--config", "recipes/tiny-gym-warm.yaml", f"data={tmp_path / 'warm.jsonl'}", "max_steps=3",
            f"output_dir={tmp_path / 'start'}", "--json")
    s = discmed("train", "grpo", "--config", "recipes/tiny-gym-grpo.yaml", f"model={tmp_path / 'start'}", "max_steps=2",
                "num_generations=4", "batch_size=8", "eval_samples=1", f"output_dir={tmp_path / 'grpo'}", "--json")
    assert s["steps"] == 2 and s["train_cases"] == 16 and s["held_out_cases"] == 8
    for label in ("before", "after"):
        assert s[label]["episodes"] == 8 and 0 <= s[label]["info_recall"] <= 1
        assert set(GYM) <= set(s[label])
    curve = [json.loads(x) for x in (tmp_path / "grpo" / "rewards.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [c["step"] for c in curve] == [1, 2]
    for c in curve:  # every step logs each of the recipe's gym rewards, each within its range
        assert 0 <= c["rewards/info_recall/mean"] <= 1 and 0 <= c["rewards/red_flags_before_advice/mean"] <= 1
        assert {f"rewards/{k}/mean" for k in s["rewards"]} <= set(c)
    g = discmed("eval", "gym", "--doctor", tmp_path / "grpo", "--out", tmp_path / "eval", "--max-new-tokens", "24",
                "--json")
    assert g["episodes"] == 8 and g["doctors"]["grpo"]["n"] == 8 and not g["failed"]
    assert "| grpo | 8 of 8 |" in (tmp_path / "eval" / "report.md").read_text(encoding="utf-8")
