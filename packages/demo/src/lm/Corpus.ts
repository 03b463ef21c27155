/**
 * The built-in language-model data, generated from a seed (no downloads, nothing outside the repo).
 *
 * - Task A (pretraining): short stories from templates over a fixed vocabulary of names, animals,
 *   foods, colours and places: "mia has a red fox . the fox likes to run in the park ."
 * - Task B (adaptation): questions about a fact table the pretrained model never saw, one food per
 *   animal: "q : what does the fox eat ? a :" -> " the fox eats plums ." Recalling 40 independent
 *   associations needs a weight update of high rank: more than one rank-4 adapter holds, which is
 *   where a chain of rank-4 links pays off.
 */

export const names = ["mia", "leo", "ava", "sam", "zoe", "max", "ivy", "ben", "eli", "kai", "nia", "tom"]
export const animals = [
  "fox", "cat", "dog", "owl", "bee", "cow", "pig", "hen", "elk", "bat", "ant", "yak", "eel", "ram", "emu", "gnu",
  "frog", "bear", "duck", "goat", "lion", "mole", "seal", "swan", "toad", "wolf", "deer", "crab", "hare", "lark",
  "mouse", "horse", "sheep", "tiger", "zebra", "otter", "camel", "koala", "panda", "snail"
]
export const foods = ["plums", "corn", "rice", "figs", "nuts", "seeds", "pears", "grapes", "beans", "honey", "fish", "bread", "kale", "oats", "limes", "dates"]
export const colours = ["red", "blue", "green", "brown", "black", "white", "gold", "grey"]
export const places = ["park", "woods", "garden", "field", "barn", "river", "hill", "town"]
export const verbs = ["run", "play", "sleep", "sing", "dig", "swim", "hide", "jump"]

/** A small seeded PRNG (mulberry32): the same text on every platform. */
export const rng = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const pick = <A>(random: () => number, items: ReadonlyArray<A>): A => items[Math.floor(random() * items.length)]!

/** Task A: `count` stories of two sentences each. */
export const stories = (count: number, seed: number): Array<string> => {
  const random = rng(seed)
  return Array.from({ length: count }, () => {
    const name = pick(random, names)
    const animal = pick(random, animals)
    const templates = [
      () => `${name} has a ${pick(random, colours)} ${animal} . the ${animal} likes to ${pick(random, verbs)} in the ${pick(random, places)} .`,
      () => `one day ${name} saw a ${animal} in the ${pick(random, places)} . the ${animal} was ${pick(random, colours)} and liked ${pick(random, foods)} .`,
      () => `the ${animal} and the ${pick(random, animals)} went to the ${pick(random, places)} . they like to ${pick(random, verbs)} .`,
      () => `${name} gave ${pick(random, foods)} to the ${animal} . then they ${pick(random, verbs)} in the ${pick(random, places)} .`
    ]
    return pick(random, templates)()
  })
}

/** Task B's fact table: one food per animal, seeded. */
/** The fact table's seed task B uses (the demo and the playground's built-in data). */
export const DEMO_FACTS_SEED = 8

export const factTable = (seed: number): ReadonlyMap<string, string> => {
  const random = rng(seed)
  return new Map(animals.map((animal) => [animal, pick(random, foods)]))
}

/** The question forms: the first three train, the fourth is held out for validation. */
const questions = [
  (animal: string) => `q : what does the ${animal} eat ? a :`,
  (animal: string) => `q : what food does the ${animal} like ? a :`,
  (animal: string) => `q : tell me what the ${animal} eats . a :`,
  (animal: string) => `q : which food is for the ${animal} ? a :`
]

export interface QaExample {
  readonly prompt: string
  readonly completion: string
}

/** Task B as prompt/completion pairs: `train` uses question forms 1-3, `valid` form 4. */
export const factQuestions = (facts: ReadonlyMap<string, string>): { readonly train: Array<QaExample>; readonly valid: Array<QaExample> } => {
  const make = (form: (animal: string) => string) => [...facts].map(([animal, food]) => ({ prompt: form(animal), completion: ` the ${animal} eats ${food} .` }))
  return { train: questions.slice(0, 3).flatMap(make), valid: make(questions[3]!) }
}
