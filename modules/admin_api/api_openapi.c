/* The OpenAPI 3.0 document of the admin API, built from the command table
 * (api_commands.c), so it cannot drift from what is served. Served at
 * GET PATH/openapi.json; docs/admin-api.openapi.json is a copy (a test
 * checks both against each other and against the commands). */
#include <stdio.h>
#include <string.h>

#include "admin_api.h"

static json_t *request_schema(const api_cmd *c)
{
    json_t *props = json_object(), *req = json_array();
    for (const api_arg *a = c->args; a && a->name; a++) {
        json_object_set_new(props, a->name,
                            a->list ? json_pack("{s:s, s:{s:s}, s:s}", "type", "array", "items",
                                                "type", "string", "description", a->doc)
                                    : json_pack("{s:s, s:s}", "type", "string", "description",
                                                a->doc));
        if (a->required)
            json_array_append_new(req, json_string(a->name));
    }
    json_t *schema = json_pack("{s:s, s:o, s:b}", "type", "object", "properties", props,
                               "additionalProperties", 1);
    if (schema && json_array_size(req))
        json_object_set(schema, "required", req);
    json_decref(req);
    return schema;
}

static const char *scope(const api_cmd *c)
{
    if (c->flags & API_OPEN)
        return "no credentials: the arguments carry them";
    if (c->flags & API_SELF)
        return "any caller, about its own credentials";
    return c->per_host ? "acts on the host its arguments name"
                       : "server-wide: server-wide administrators, tokens without hosts";
}

static json_t *operation(const api_cmd *c)
{
    json_t *op = json_pack(
        "{s:s, s:s, s:s, s:{s:b, s:{s:{s:o}}}, s:{s:{s:s, s:{s:{s:{}}}}, s:{s:s, s:{s:{s:{s:s}}}}}}",
        "operationId", c->name, "summary", c->summary, "description",
        scope(c),
        "requestBody", "required", 1, "content", "application/json", "schema", request_schema(c),
        "responses", "200", "description", c->answer, "content", "application/json", "schema",
        "default", "description", "an error: 400, 401, 403, 404, 409, 501, 503", "content",
        "application/json", "schema", "$ref", "#/components/schemas/Error");
    if (op && (c->flags & API_OPEN))
        json_object_set_new(op, "security", json_array());
    return op;
}

json_t *api_openapi(const char *path)
{
    json_t *paths = json_object();
    for (const api_cmd *c = api_commands; paths && c->name; c++) {
        char p[128];
        snprintf(p, sizeof(p), "/%s", c->name);
        json_object_set_new(paths, p, json_pack("{s:o}", "post", operation(c)));
    }
    return json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:[{s:s}], s:[{s:[]}, {s:[]}], s:o, s:{s:{s:{s:s, s:s}, s:{s:s, "
        "s:s}}, s:{s:{s:s, s:[sss], s:{s:{s:s}, s:{s:s}, s:{s:s}}}}}}",
        "openapi", "3.0.3", "info", "title", "xmppd administration API", "version", "1.0",
        "description", "ejabberd mod_http_api style commands: POST a JSON object to each path",
        "servers", "url", path, "security", "basic", "bearer", "paths", paths, "components",
        "securitySchemes", "basic", "type", "http", "scheme", "basic", "bearer", "type", "http",
        "scheme", "bearer", "schemas", "Error", "type", "object", "required", "status", "code",
        "message", "properties", "status", "type", "string", "code", "type", "integer", "message",
        "type", "string");
}
