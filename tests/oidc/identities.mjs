// Who exists at the test OpenID provider (tests/oidc/provider.mjs): Ward's client, the people
// who sign in, and the machine clients that get JWT access tokens. Shared with the tests.

export const CLIENT_ID = 'ward';
export const CLIENT_SECRET = 'ward-secret';
export const DEFAULT_RESOURCE = 'https://ward.example.test';

/** The people who can sign in, with their password and claims. */
export const USERS = {
  alice: { password: 'alice-password', name: 'Alice Example', groups: ['engineering', 'secops'] },
  bob: { password: 'bob-password', name: 'Bob Example', groups: ['engineering'] },
};

/** Machine clients (client_credentials) and the claims of the tokens they get. */
export const MACHINES = {
  'ci-main': {
    secret: 'ci-main-secret',
    alg: 'RS256',
    claims: {
      sub: 'repo:example/payments:ref:refs/heads/main',
      repository: 'example/payments',
      ref: 'refs/heads/main',
      environment: 'production',
      groups: ['deployers', 'payments'],
    },
  },
  'ci-feature': {
    secret: 'ci-feature-secret',
    alg: 'ES256',
    claims: {
      sub: 'repo:example/payments:ref:refs/heads/feature/x',
      repository: 'example/payments',
      ref: 'refs/heads/feature/x',
      environment: 'staging',
      groups: ['payments'],
    },
  },
};
