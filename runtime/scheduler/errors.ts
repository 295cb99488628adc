/** Errors the scheduler raises. Each carries the detail a user needs to act on it. */
export class SchedulerError extends Error {
  override name = 'SchedulerError';
}

/** No plan satisfies the constraints; `reasons` says which ones bind (one line each). */
export class InfeasiblePlanError extends SchedulerError {
  override name = 'InfeasiblePlanError';
  constructor(message: string, readonly reasons: string[]) {
    super(reasons.length ? `${message}: ${reasons.join('; ')}` : message);
  }
}

/** A plan breaks a constraint of the state it is checked against. */
export class InvalidPlanError extends SchedulerError {
  override name = 'InvalidPlanError';
  constructor(message: string, readonly violations: string[]) {
    super(violations.length ? `${message}: ${violations.join('; ')}` : message);
  }
}

/** Bad input: a request, profile or link with values the model cannot use. */
export class InvalidInputError extends SchedulerError {
  override name = 'InvalidInputError';
}

/** The device profile cache or a measurement is unusable. */
export class ProfileError extends SchedulerError {
  override name = 'ProfileError';
}
