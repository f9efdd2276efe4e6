/** One problem with one value, located by a JSON pointer such as `/scale_up_rules/0/operator`. */
export interface FieldError {
  field: string;
  message: string;
  /** Where a problem is in YAML text (POST /validate): 1-based line and column, 0-based document. */
  line?: number;
  column?: number;
  document?: number;
}

interface ErrorSpec {
  status: number;
  title: string;
}

/**
 * The catalogue of errors the daemon returns to clients. Every error that reaches an HTTP client
 * has a code from this list; anything else becomes a logged 500 without details.
 * README.md's "Errors" table lists them for clients (docs/api-errors-table.md has every bad input the tests send).
 */
export const ERROR_CATALOGUE = {
  VALIDATION_FAILED: { status: 422, title: 'The policy is not valid' },
  MALFORMED_JSON: { status: 400, title: 'The request body is not valid JSON' },
  BAD_REQUEST: { status: 400, title: 'The request is not valid' },
  UNAUTHORIZED: { status: 401, title: 'A bearer token is required' },
  FORBIDDEN: { status: 403, title: 'The token lacks the scope this request needs' },
  NOT_FOUND: { status: 404, title: 'No such resource' },
  ROUTE_NOT_FOUND: { status: 404, title: 'No such route' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed on this route' },
  DUPLICATE_NAME: { status: 409, title: 'A policy with this name already exists' },
  FILE_MANAGED: { status: 409, title: 'The policy is managed by a policy file' },
  STATE_CONFLICT: { status: 409, title: "The policy's state changed during the evaluation" },
  POLICY_PAUSED: { status: 409, title: 'The policy is paused' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'The request body is too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'The request body must be application/json' },
  STORAGE_UNAVAILABLE: { status: 503, title: 'Storage is unavailable' },
  INTERNAL: { status: 500, title: 'Internal server error' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** An error meant for a client: it carries a catalogue code and, for validation, field errors. */
export class ScalerError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly errors: FieldError[] | undefined;

  constructor(code: ErrorCode, detail: string, errors?: FieldError[]) {
    super(detail);
    this.name = 'ScalerError';
    this.code = code;
    this.status = ERROR_CATALOGUE[code].status;
    this.errors = errors;
  }
}

export function validationError(errors: FieldError[], what = 'policy'): ScalerError {
  const first = errors[0];
  const detail =
    errors.length === 1 && first !== undefined
      ? `The ${what} has 1 problem: ${first.field || '/'} ${first.message}`
      : `The ${what} has ${errors.length} problems; see errors`;
  return new ScalerError('VALIDATION_FAILED', detail, errors);
}

/** Problem type URI for a code: stable, listed in README.md's "Errors" table. */
export function problemType(code: ErrorCode): string {
  return `https://philotes.dev/problems/${code.toLowerCase().replaceAll('_', '-')}`;
}
