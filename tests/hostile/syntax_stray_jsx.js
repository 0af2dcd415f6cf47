// expect: syntax
return <div />;
