// The demo service's handler: answers with its greeting and stage.
exports.handler = async (event) => ({
  statusCode: 200,
  body: JSON.stringify({ greeting: process.env.GREETING, stage: process.env.STAGE, table: process.env.TABLE_NAME, event }),
});
