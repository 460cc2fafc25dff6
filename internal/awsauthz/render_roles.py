"""render_roles.py: the IAM policies CloudFormation would give each function.

Usage: python3 render_roles.py TEMPLATE STACK_NAME ACCOUNT REGION [OVERRIDES_JSON]

Applies the SAM transform offline (cfn-lint's wrapper around samtranslator,
the same code `cfn-lint template.yaml` runs), then resolves the intrinsic
functions (Ref, Fn::Sub, Fn::GetAtt, Fn::If with the template's conditions,
Fn::Join, Fn::Select, Fn::Split, Fn::Equals/Not/And/Or, AWS::NoValue) with the
given account, region and stack name and the parameters' defaults. Physical
names CloudFormation would generate are "<stack>-<LogicalId>"; OVERRIDES_JSON
maps a logical id to the physical id its Ref returns (e.g. the created secret's
ARN) or a parameter name to its value.

Prints JSON: {"functions": [{"logicalId", "name", "role": {"logicalId",
"name", "arn"}, "policies": [{"name", "managed", "document"}]}],
"bucketPolicies": [{"bucket", "document"}]}. AWS managed policies are
expanded from MANAGED below (the ones SAM attaches); an unknown one is an
error, so a new managed policy never silently grants nothing.
"""

import json
import logging
import os
import re
import sys

logging.disable(logging.CRITICAL)

# The AWS managed policies SAM attaches to function roles, as AWS publishes
# them (aws iam get-policy-version). Used only to evaluate requests locally.
MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ],
    },
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                ],
                "Resource": ["*"],
            }
        ],
    },
}


class Unresolvable(Exception):
    pass


class Resolver:
    def __init__(self, template, stack, account, region, overrides):
        self.t = template
        self.stack = stack
        self.account = account
        self.region = region
        self.overrides = overrides
        self.params = {}
        for name, p in (template.get("Parameters") or {}).items():
            v = overrides.get(name, p.get("Default", ""))
            self.params[name] = v
        self.pseudo = {
            "AWS::AccountId": account,
            "AWS::Region": region,
            "AWS::StackName": stack,
            "AWS::StackId": "arn:aws:cloudformation:%s:%s:stack/%s/00000000-0000-0000-0000-000000000000" % (region, account, stack),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
        }
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.t["Conditions"][name]))
        return self.conditions[name]

    def resource(self, logical):
        r = self.t["Resources"].get(logical)
        if r is None:
            raise Unresolvable("no resource " + logical)
        return r

    def prop(self, logical, name):
        v = (self.resource(logical).get("Properties") or {}).get(name)
        return None if v is None else self.resolve(v)

    def ref(self, name):
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.overrides:
            return self.overrides[name]
        typ = self.resource(name)["Type"]
        default = "%s-%s" % (self.stack, name)
        if typ == "AWS::S3::Bucket":
            return self.prop(name, "BucketName") or default
        if typ == "AWS::Lambda::Function":
            return self.prop(name, "FunctionName") or default
        if typ == "AWS::IAM::Role":
            return self.prop(name, "RoleName") or default
        if typ == "AWS::SQS::Queue":
            return "https://sqs.%s.amazonaws.com/%s/%s" % (self.region, self.account, self.getatt(name, "QueueName"))
        if typ == "AWS::SecretsManager::Secret":
            return "arn:aws:secretsmanager:%s:%s:secret:%s" % (self.region, self.account, self.prop(name, "Name") or default)
        return default

    def getatt(self, logical, attr):
        typ = self.resource(logical)["Type"]
        if typ == "AWS::S3::Bucket" and attr == "Arn":
            return "arn:aws:s3:::" + self.ref(logical)
        if typ == "AWS::Lambda::Function" and attr == "Arn":
            return "arn:aws:lambda:%s:%s:function:%s" % (self.region, self.account, self.ref(logical))
        if typ == "AWS::IAM::Role" and attr == "Arn":
            return "arn:aws:iam::%s:role/%s" % (self.account, self.ref(logical))
        if typ == "AWS::SQS::Queue" and attr == "QueueName":
            return self.prop(logical, "QueueName") or "%s-%s" % (self.stack, logical)
        if typ == "AWS::SQS::Queue" and attr == "Arn":
            return "arn:aws:sqs:%s:%s:%s" % (self.region, self.account, self.getatt(logical, "QueueName"))
        return "%s-%s-%s" % (self.stack, logical, attr)

    def sub(self, text, variables):
        def repl(m):
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical, attr = name.split(".", 1)
                return str(self.getatt(logical, attr))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", repl, text)

    def resolve(self, v):
        if isinstance(v, list):
            out = [self.resolve(x) for x in v]
            return [x for x in out if x is not NOVALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, a), = v.items()
            if k == "Ref":
                return NOVALUE if a == "AWS::NoValue" else self.ref(a)
            if k == "Fn::Sub":
                if isinstance(a, list):
                    return self.sub(a[0], {n: self.resolve(x) for n, x in a[1].items()})
                return self.sub(a, {})
            if k == "Fn::GetAtt":
                logical, attr = a if isinstance(a, list) else a.split(".", 1)
                return self.getatt(logical, attr)
            if k == "Fn::If":
                return self.resolve(a[1] if self.condition(a[0]) else a[2])
            if k == "Fn::Join":
                return a[0].join(str(x) for x in self.resolve(a[1]))
            if k == "Fn::Select":
                return self.resolve(a[1])[int(self.resolve(a[0]))]
            if k == "Fn::Split":
                return self.resolve(a[1]).split(a[0])
            if k == "Fn::Equals":
                x, y = self.resolve(a[0]), self.resolve(a[1])
                return str(x) == str(y)
            if k == "Fn::Not":
                return not self.resolve(a[0])
            if k == "Fn::And":
                return all(self.resolve(x) for x in a)
            if k == "Fn::Or":
                return any(self.resolve(x) for x in a)
            if k == "Condition":
                return self.condition(a)
            if k.startswith("Fn::"):
                raise Unresolvable("intrinsic " + k + " is not supported")
        out = {}
        for key, x in v.items():
            r = self.resolve(x)
            if r is not NOVALUE:
                out[key] = r
        return out


NOVALUE = object()


def plain(v):
    """cfn-lint's decoded nodes (str_node, dict_node) as plain JSON values."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return v
    return str(v)


def main():
    path, stack, account, region = sys.argv[1:5]
    overrides = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    from cfnlint.decode import decode
    from cfnlint.template.transforms._sam import Transform

    tpl, errs = decode(path)
    if errs:
        sys.exit("render_roles: cannot read %s: %s" % (path, errs))
    tr = Transform(path, tpl, region)
    errs = tr.transform_template()
    if errs:
        sys.exit("render_roles: SAM transform failed: %s" % errs)
    t = plain(tr.template())
    r = Resolver(t, stack, account, region, overrides)

    out = {"functions": [], "bucketPolicies": []}
    for logical, res in sorted(t["Resources"].items()):
        if "Condition" in res and not r.condition(res["Condition"]):
            continue
        props = res.get("Properties") or {}
        if res["Type"] == "AWS::Lambda::Function":
            role = props["Role"]
            if not (isinstance(role, dict) and "Fn::GetAtt" in role):
                sys.exit("render_roles: %s's role is not a role of this template" % logical)
            role_id = role["Fn::GetAtt"][0]
            role_props = r.resource(role_id).get("Properties") or {}
            policies = []
            for p in role_props.get("Policies") or []:
                p = r.resolve(p)
                policies.append({"name": p["PolicyName"], "managed": False, "document": p["PolicyDocument"]})
            for arn in r.resolve(role_props.get("ManagedPolicyArns") or []):
                if arn not in MANAGED:
                    sys.exit("render_roles: managed policy %s is not known to render_roles.py; add its document" % arn)
                policies.append({"name": arn.rsplit("/", 1)[1], "managed": True, "document": MANAGED[arn]})
            out["functions"].append({
                "logicalId": logical,
                "name": r.ref(logical),
                "role": {"logicalId": role_id, "name": r.ref(role_id), "arn": r.getatt(role_id, "Arn")},
                "policies": policies,
            })
        elif res["Type"] == "AWS::S3::BucketPolicy":
            out["bucketPolicies"].append({"bucket": r.resolve(props["Bucket"]), "document": r.resolve(props["PolicyDocument"])})
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
