/** Request validation with the schemas compiled once in app/schemas/validators.ts. */
import type { RequestHandler } from 'express';
import { ValidationError } from '../domain/errors.js';
import { describeAjvErrors, type ValidateFunction } from '../schemas/validators.js';
import { sendProblem } from './problems.js';

export function check<T>(validate: ValidateFunction<T>, data: unknown, what: string): T {
  if (validate(data)) return data;
  throw new ValidationError(`The ${what} is invalid`, describeAjvErrors(validate.errors));
}

/** Bodies must be JSON (415 otherwise); express.json has already parsed and size-checked them. */
export function requireJsonBody(): RequestHandler {
  return (req, res, next) => {
    if (!req.is('application/json')) {
      sendProblem(req, res, {
        status: 415,
        slug: 'unsupported-media-type',
        title: 'Unsupported media type',
        detail: 'Send the request body as application/json',
      });
      return;
    }
    next();
  };
}
