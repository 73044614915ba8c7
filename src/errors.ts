// Error classes. A UserError (and its subclasses) is a mistake in what the user asked for or supplied: the CLI
// prints its message on one line, without a stack trace. EngineError is a failure inside libtorch.

export class AlexnetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad input from the user: a wrong option, a missing file, an unknown model. */
export class UserError extends AlexnetError {}

/** The environment is not set up: the native engine is missing or was built for another libtorch. */
export class SetupError extends UserError {}

/** A tensor of the wrong shape or dtype was given to a model or layer. */
export class ShapeError extends UserError {}

/** A state dict does not fit a model: lists every missing, unexpected and mis-shaped key at once. */
export class StateDictError extends UserError {
  constructor(
    message: string,
    readonly missing: string[] = [],
    readonly unexpected: string[] = [],
    readonly mismatched: { key: string; expected: number[]; got: number[] }[] = [],
  ) {
    super(message);
  }
}

/** A libtorch operation failed. `op` names the operation, `shapes` the tensor arguments. */
export class EngineError extends AlexnetError {
  op = '';
  shapes = '';
  detail = '';
}

/** A file (data set, weights, image) is unreadable, truncated or malformed. */
export class FormatError extends UserError {}
