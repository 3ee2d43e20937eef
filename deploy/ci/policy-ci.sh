#!/bin/sh
# Policy as code for any CI: checks on every change, plan/apply on the main branch.
#
#   policy-ci.sh check DIR          fmt -check, validate, test (JUnit to $JUNIT_FILE if set)
#   policy-ci.sh plan DIR           exit 2 when the server differs from DIR (drift)
#   policy-ci.sh apply DIR MESSAGE  make the server match DIR
#
# For plan/apply, WARD_ADDR must be set, and either WARD_TOKEN, or WARD_JWT (an OIDC token
# from the CI, e.g. GitLab's CI_JOB_JWT_V2 / id_tokens) with WARD_JWT_ROLE (default "ci")
# and WARD_JWT_MOUNT (default "jwt"): the script logs in and gets a short-lived token, so no
# long-lived token is stored in the CI.
set -eu

WARD=${WARD:-ward}
verb=${1:?usage: policy-ci.sh check|plan|apply DIR [MESSAGE]}
dir=${2:?usage: policy-ci.sh check|plan|apply DIR [MESSAGE]}

login() {
    if [ -n "${WARD_TOKEN:-}" ]; then
        return 0
    fi
    if [ -z "${WARD_JWT:-}" ]; then
        echo "policy-ci: set WARD_TOKEN, or WARD_JWT (the CI's OIDC token) to log in" >&2
        exit 1
    fi
    WARD_TOKEN=$("$WARD" login -method=jwt -path="${WARD_JWT_MOUNT:-jwt}" -token-only \
        role="${WARD_JWT_ROLE:-ci}" jwt="$WARD_JWT")
    export WARD_TOKEN
}

case "$verb" in
check)
    "$WARD" policy fmt -check "$dir"
    "$WARD" policy validate "$dir"
    if [ -n "${JUNIT_FILE:-}" ]; then
        "$WARD" policy test -format=junit "$dir" >"$JUNIT_FILE"
    else
        "$WARD" policy test "$dir"
    fi
    ;;
plan)
    login
    "$WARD" policy plan "$dir"
    ;;
apply)
    login
    message=${3:-"ward policy apply from CI"}
    "$WARD" policy apply -message="$message" "$dir"
    ;;
*)
    echo "policy-ci: unknown verb $verb (check, plan or apply)" >&2
    exit 1
    ;;
esac
